"""Finding and reading the photos users have: EXIF, every colour mode, animations, truncated,
too many pixels."""
import os

import numpy as np
import pytest
from detectron2.data.detection_utils import read_image as d2_read_image
from PIL import Image

from image_builders import corrupt_dds

from bikestate.inference import IMAGE_EXTENSIONS, UnreadableImageError, find_images, read_image


def _photo(h=30, w=40, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_exif_rotated_photo_is_read_upright_like_detectron2(tmp_path):
    path = str(tmp_path / "phone.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 40 wide x 30 high, shown 30 x 40
    Image.fromarray(_photo()).save(path, exif=exif, quality=95)
    image = read_image(path, format="RGB")
    assert image.shape == (40, 30, 3)
    np.testing.assert_array_equal(image, d2_read_image(path, format="RGB"))
    np.testing.assert_array_equal(read_image(path, format="BGR"), image[:, :, ::-1])


@pytest.mark.parametrize("orientation, shape", [(1, (30, 40)), (2, (30, 40)), (3, (30, 40)),
                                                (4, (30, 40)), (5, (40, 30)), (6, (40, 30)),
                                                (7, (40, 30)), (8, (40, 30))])
def test_other_orientations_match_detectron2(tmp_path, orientation, shape):
    path = str(tmp_path / f"o{orientation}.jpg")
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_photo()).save(path, exif=exif)
    image = read_image(path, format="BGR")
    assert image.shape[:2] == shape
    np.testing.assert_array_equal(image, d2_read_image(path, format="BGR"))


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = str(tmp_path / "gray.png")
    Image.fromarray(_photo()[:, :, 0]).save(path)
    image = read_image(path)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 1])
    np.testing.assert_array_equal(image[:, :, 0], _photo()[:, :, 0])


def test_rgba_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere, but the left half fully transparent
    rgba[:, 6:, 3] = 255
    path = str(tmp_path / "cutout.png")
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = read_image(path, format="RGB")
    assert image.shape == (10, 12, 3)
    assert (image[:, :6] == 255).all()
    assert (image[:, 6:] == [200, 0, 0]).all()


def test_16_bit_png_is_stretched_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 12 * 10).reshape(10, 12).astype(np.uint16)
    path = str(tmp_path / "deep.png")
    Image.fromarray(values).save(path)
    image = read_image(path, format="RGB")
    assert image.shape == (10, 12, 3)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255
    assert len(np.unique(image[..., 0])) > 50  # a gradient, not a saturated white image


# Each Pillow mode in a format that stores it.
MODES = [("1", "png"), ("L", "jpg"), ("LA", "png"), ("P", "gif"), ("RGB", "webp"),
         ("RGBA", "png"), ("CMYK", "jpg"), ("I;16", "png"), ("I", "tif"), ("F", "tif")]


@pytest.mark.parametrize("mode, ext", MODES, ids=[m for m, _ in MODES])
def test_every_colour_mode_becomes_8_bit_rgb(tmp_path, mode, ext):
    rgb = Image.fromarray(_photo(30, 40))
    if mode == "I;16":
        image = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257))
    elif mode in ("I", "F"):
        image = rgb.convert("L").convert(mode)
    else:
        image = rgb.convert(mode)
    path = str(tmp_path / f"photo.{ext}")
    image.save(path)
    assert Image.open(path).mode == mode
    array = read_image(path, format="RGB")
    assert array.shape == (30, 40, 3) and array.dtype == np.uint8
    assert array.max() > 200  # not crushed to black


def test_float_images_in_0_1_are_stretched_and_nan_is_black(tmp_path):
    values = np.linspace(0, 1, 12 * 10, dtype=np.float32).reshape(10, 12)
    values[0, :3] = [np.nan, np.inf, -np.inf]
    path = str(tmp_path / "float.tif")
    Image.fromarray(values, mode="F").save(path)
    image = read_image(path, format="RGB")
    assert image[-1, -1, 0] == 255 and (image[0, :3] == 0).all()


@pytest.mark.parametrize("ext, what", [("gif", "frames"), ("webp", "frames"), ("png", "frames"),
                                       ("tif", "pages")])
def test_animations_and_multi_page_tiffs_give_their_first_frame_and_say_so(tmp_path, ext, what):
    frames = [Image.fromarray(np.full((20, 30, 3), value, np.uint8)) for value in (40, 200, 120)]
    path = str(tmp_path / f"anim.{ext}")
    frames[0].save(path, save_all=True, append_images=frames[1:])
    notes = []
    image = read_image(path, format="RGB", notes=notes)
    assert image.shape == (20, 30, 3)
    assert abs(int(image.mean()) - 40) <= 2
    assert notes == [f"{'multi-page TIFF' if ext == 'tif' else 'animated'}: "
                     f"the first of 3 {what} is inspected"]
    assert read_image(path).shape == (20, 30, 3)  # without a notes list: the same image


def test_gif_is_an_image_extension():
    assert ".gif" in IMAGE_EXTENSIONS


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_is_the_decoders_and_beyond_it_is_one_line(tmp_path, monkeypatch):
    # Pillow's limit (about 89 megapixels) lowered to keep the test small; read_image reads
    # up to the limit whatever it is set to.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 50)
    for h, w in ((40, 50), (40, 51), (90, 50)):  # the limit, just above, above twice the limit
        path = str(tmp_path / f"{h}x{w}.png")
        Image.fromarray(_photo(h, w)).save(path)
        if h * w <= 40 * 50:
            assert read_image(path).shape == (h, w, 3)
            continue
        with pytest.raises(UnreadableImageError) as e:
            read_image(path)
        message = str(e.value)
        assert message.startswith(path) and "\n" not in message
        assert "limit of 2000" in message and "PIL.Image.MAX_IMAGE_PIXELS" in message


def test_truncated_and_fake_images_raise_one_line_errors(tmp_path):
    good = str(tmp_path / "good.jpg")
    Image.fromarray(_photo(120, 160)).save(good)
    data = open(good, "rb").read()
    truncated = str(tmp_path / "truncated.jpg")
    open(truncated, "wb").write(data[: len(data) // 2])
    fake = str(tmp_path / "fake.png")
    open(fake, "w").write("not an image")
    for path in (truncated, fake, str(tmp_path / "missing.jpg")):
        with pytest.raises(UnreadableImageError) as e:
            read_image(path)
        assert str(e.value).startswith(path) and "\n" not in str(e.value)


def test_a_decoder_failing_in_its_own_way_is_one_line_naming_the_file(tmp_path):
    path = str(tmp_path / "odd.dds")
    open(path, "wb").write(corrupt_dds())
    with pytest.raises(UnreadableImageError) as e:
        read_image(path)
    assert str(e.value) == (f"{path}: cannot read image (NotImplementedError: Unknown pixel "
                            "format flags 8)")


def test_find_images_folders_globs_and_skips(tmp_path):
    for name in ("b.JPG", "a.png", "notes.txt", ".hidden.jpg", "sub/c.jpeg", "sub/d.csv"):
        os.makedirs(os.path.dirname(str(tmp_path / name)), exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    root = str(tmp_path)

    images, skipped, missing = find_images([root])
    assert [os.path.basename(p) for p in images] == ["a.png", "b.JPG"]
    assert [os.path.basename(p) for p in skipped] == ["notes.txt"]
    assert missing == []

    images, skipped, _ = find_images([root], recursive=True)
    assert [os.path.relpath(p, root) for p in images] == ["a.png", "b.JPG", "sub/c.jpeg"]
    assert sorted(os.path.basename(p) for p in skipped) == ["d.csv", "notes.txt"]

    images, _, _ = find_images([os.path.join(root, "**", "*.jpeg"), os.path.join(root, "a.png"),
                                os.path.join(root, "a.png")])
    assert [os.path.relpath(p, root) for p in images] == ["sub/c.jpeg", "a.png"]  # no duplicate

    images, skipped, missing = find_images([os.path.join(root, "nope", "*.jpg"),
                                            os.path.join(root, "absent.jpg")])
    assert images == [] and skipped == [] and len(missing) == 2
