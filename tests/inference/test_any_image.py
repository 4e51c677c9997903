"""Every decodable image gets an answer: a property-based test over sizes, shapes and modes.

Hypothesis generates image files (sizes from 1x1 to the decoder's pixel limit, aspect ratios up
to 1:500 and 500:1, Pillow modes 1, L, LA, P, RGB, RGBA, CMYK, I;16, I and F, animated GIF and
WebP, multi-page TIFF, the eight EXIF orientations) and runs them through what tools/predict.py
runs: :func:`inspect_images` with the real predictor (random weights), report and visualizer.
Each must give no error, 22 report rows and boxes inside the upright image.

The pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels) is lowered to
:data:`PIXEL_LIMIT` here so that an example takes a fraction of a second; the code under test
reads the limit, whatever it is. `make test` runs a few dozen examples (profile ``bikestate``,
tests/conftest.py); thousands: ``pytest --hypothesis-profile long tests/inference/test_any_image.py``.
"""
import os
import tempfile
from collections import namedtuple

import cv2
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from bikestate.constants import PART_NAMES
from bikestate.inference import BikeStatePredictor, inspect_images

PIXEL_LIMIT = 1_000_000
MAX_RATIO = 500
# File formats that store each mode as such (Pillow writes them and reads the same mode back).
FORMATS = {
    "1": ["png", "tif", "bmp"],
    "L": ["png", "jpg", "tif", "bmp"],
    "LA": ["png", "tif"],
    "P": ["png", "gif", "bmp", "tif"],
    "RGB": ["png", "jpg", "tif", "bmp", "webp"],
    "RGBA": ["png", "tif", "webp"],
    "CMYK": ["jpg", "tif"],
    "I;16": ["png", "tif"],
    "I": ["tif"],
    "F": ["tif"],
}
# Several frames or pages: their mode. Animated WebP is written with an alpha channel because
# Pillow reads it back as RGB or RGBA depending on the frames' content (the encoder may store
# unchanged areas as transparent); with alpha it is RGBA every time.
ANIMATED = {"gif": "P", "webp": "RGBA", "tif": "RGB"}
MAX_SIDE = {"webp": 16383, "jpg": 65500, "gif": 65535}  # the formats' own limits
EXIF_FORMATS = ("jpg", "png", "webp")  # where Pillow reads the orientation back consistently

# stored_h x stored_w as written; orientation 5-8 shows it transposed (h and w swapped).
Spec = namedtuple("Spec", "mode ext stored_h stored_w orientation frames seed")


@st.composite
def image_specs(draw):
    short = draw(st.integers(1, 64) | st.integers(1, int(PIXEL_LIMIT ** 0.5)))
    ratio = draw(st.floats(1.0, MAX_RATIO))
    long = max(short, min(round(short * ratio), PIXEL_LIMIT // short))
    h, w = (short, long) if draw(st.booleans()) else (long, short)
    frames = draw(st.sampled_from([1, 1, 1, 3]))
    if frames > 1:
        ext = draw(st.sampled_from(sorted(ANIMATED)))
        mode = ANIMATED[ext]
    else:
        mode = draw(st.sampled_from(sorted(FORMATS)))
        ext = draw(st.sampled_from(FORMATS[mode]))
    limit = MAX_SIDE.get(ext, PIXEL_LIMIT)
    h, w = min(h, limit), min(w, limit)
    orientation = draw(st.integers(1, 8)) if ext in EXIF_FORMATS else 1
    return Spec(mode, ext, h, w, orientation, frames, draw(st.integers(0, 2**16)))


def _content(spec, frame):
    """Pixels of ``spec.mode``: a coarse random pattern (cheap to write at any size)."""
    rng = np.random.default_rng(spec.seed + frame)
    tile = (rng.random((min(spec.stored_h, 16), min(spec.stored_w, 16), 4)) * 255).astype(np.uint8)
    base = Image.fromarray(tile, "RGBA").resize((spec.stored_w, spec.stored_h), Image.NEAREST)
    if spec.mode == "I;16":
        return Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    if spec.mode == "I":
        return Image.fromarray(np.asarray(base.convert("L"), np.int32) * 1000 - 20000)
    if spec.mode == "F":
        return Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255)
    return base if spec.mode == "RGBA" else base.convert("RGB").convert(spec.mode)


def _write(spec, folder):
    path = os.path.join(folder, f"image.{spec.ext}")
    frames = [_content(spec, i) for i in range(spec.frames)]
    options = {}
    if spec.frames > 1:
        options.update(save_all=True, append_images=frames[1:])
    if spec.orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = spec.orientation
        options["exif"] = exif
    frames[0].save(path, **options)
    return path


@pytest.fixture(scope="module")
def predictor(small_cfg):
    torch.manual_seed(0)
    # Ten detections per image (the most likely, whatever the random model scores them).
    return BikeStatePredictor(small_cfg(**{"TEST.DETECTIONS_PER_IMAGE": 10}))


@pytest.fixture(scope="module")
def pixel_limit():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", PIXEL_LIMIT)
        yield PIXEL_LIMIT


@given(spec=image_specs())
@example(spec=Spec("RGB", "jpg", 1, 1, 1, 1, 0))
@example(spec=Spec("RGB", "png", 3, 500, 1, 1, 0))
@example(spec=Spec("L", "png", 500, 1, 6, 1, 0))
@example(spec=Spec("RGB", "jpg", 1000, 1000, 8, 1, 0))  # exactly at the pixel limit
@example(spec=Spec("RGB", "png", 44, 22000, 1, 1, 0))  # 500:1 near the limit
@example(spec=Spec("F", "tif", 2, 1, 1, 1, 0))
@example(spec=Spec("P", "gif", 30, 40, 1, 3, 0))
def test_every_decodable_image_gets_a_report_and_a_picture(predictor, pixel_limit, spec):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(spec, folder)
        with Image.open(path) as written:
            assert written.mode == spec.mode
        [result] = inspect_images(predictor, [path], operating_point=0.0)
    if result.exception is not None:
        raise result.exception
    assert result.error is None

    h, w = spec.stored_h, spec.stored_w
    if spec.orientation >= 5:
        h, w = w, h
    assert (result.height, result.width) == (h, w)
    assert len(result.notes) == (spec.frames > 1)

    report = result.report
    assert (report["height"], report["width"]) == (h, w)
    assert [part["part"] for part in report["parts"]] == list(PART_NAMES)
    boxes = [d["bbox"] for d in result.detections] + [
        part["box"] for part in report["parts"] if part["box"] is not None]
    assert len(result.detections) == 10
    for x, y, bw, bh in boxes:
        assert -0.01 <= x <= x + bw <= w + 0.01 and -0.01 <= y <= y + bh <= h + 0.01

    picture = cv2.imdecode(np.frombuffer(result.picture, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[2] == 3
