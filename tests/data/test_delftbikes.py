"""DelftBikes reader and validator: every validation rule, with its message, on tiny real files."""
import copy
import json
import os

import pytest
from PIL import Image

from bikestate.data.delftbikes import Problem, load_delftbikes, parse_part_state
from bikestate.utils.errors import ConfigError, DataError

W, H = 64, 48  # every fixture image is 64 wide, 48 high


def part(name, left, top, width, height, state="intact", cls="same", trust=0.9):
    p = {"part_name": name,
         "absolute_bounding_box": {"left": left, "top": top, "width": width, "height": height},
         "object_state": state, "trust": trust}
    if cls == "same":
        p["object_state_class"] = ["intact", "damaged", "absent", "occluded"].index(state)
    elif cls is not None:
        p["object_state_class"] = cls
    return p


def good_annotations():
    """Three valid images; b.jpg has no `image` block (its size comes from the file)."""
    return {
        "b.jpg": {"parts": {"saddle": part("saddle", 10, 5, 20, 10, "damaged", trust=0.5)}},
        "a.jpg": {"image": {"height": H, "width": W, "channels": 3},
                  "parts": {"bell": part("bell", 1, 2, 3, 4, "absent"),
                            "front_wheel": part("front_wheel", 0, 0, W, H, "occluded")}},
        "sub/c.png": {"image": {"height": H, "width": W}, "parts": {}},
    }


@pytest.fixture
def dataset_dir(tmp_path):
    """A folder with images/a.jpg, images/b.jpg, images/sub/c.png and a writer for ann.json."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (W, H), (120, 30, 200)).save(images / name, quality=90)
    Image.new("RGB", (W, H), (10, 200, 30)).save(images / "sub" / "c.png")

    def write(annotations, text=None):
        path = tmp_path / "ann.json"
        path.write_text(text if text is not None else json.dumps(annotations))
        return str(path)

    return {"root": tmp_path, "images": str(images), "write": write}


def load(dataset_dir, annotations, **kwargs):
    return load_delftbikes(dataset_dir["write"](annotations), dataset_dir["images"], **kwargs)


def test_valid_file_gives_sorted_records_with_states(dataset_dir):
    ds = load(dataset_dir, good_annotations())
    assert [r["file_name"] for r in ds.images] == ["a.jpg", "b.jpg", "sub/c.png"]
    a, b, c = ds.images
    assert (a["height"], a["width"]) == (H, W)
    assert a["parts"] == [
        {"part_name": "bell", "bbox": [1, 2, 3, 4], "state": 2, "state_name": "absent",
         "trust": 0.9},
        {"part_name": "front_wheel", "bbox": [0, 0, W, H], "state": 3, "state_name": "occluded",
         "trust": 0.9},
    ]
    assert b["parts"][0]["state"] == 1 and b["parts"][0]["trust"] == 0.5
    assert c["parts"] == []
    assert ds.problems == [] and ds.clipped == 0
    assert ds.dropped_boxes == 0 and ds.dropped_images == 0 and ds.num_boxes == 3


def test_size_is_read_from_the_file_when_not_declared(dataset_dir):
    Image.new("RGB", (37, 23)).save(os.path.join(dataset_dir["images"], "b.jpg"))
    ann = good_annotations()
    ann["b.jpg"]["parts"]["saddle"]["absolute_bounding_box"] = {"left": 1, "top": 1, "width": 5,
                                                                "height": 5}
    ds = load(dataset_dir, ann)
    b = ds.images[1]
    assert (b["height"], b["width"]) == (23, 37)


def test_problem_str_names_image_and_part():
    assert str(Problem("F01.jpg", "saddle", "zero-size box (width 0)")) == \
        "F01.jpg / saddle: zero-size box (width 0)"
    assert str(Problem("F01.jpg", None, "image file not found")) == "F01.jpg: image file not found"


# (how to break the annotations, image, part, words the message must contain). Every case keeps
# the other records valid, so exactly one problem is expected.
def _set(path, value):
    def edit(ann):
        node = ann
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(path):
    def edit(ann):
        node = ann
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


BOX = ("a.jpg", "parts", "bell", "absolute_bounding_box")
BAD_RECORDS = [
    ("record_not_object", _set(("a.jpg",), ["not", "a", "record"]), "a.jpg", None,
     "record is a JSON array"),
    ("missing_parts", _delete(("a.jpg", "parts")), "a.jpg", None, "record has no 'parts'"),
    ("parts_wrong_type", _set(("a.jpg", "parts"), "saddle"), "a.jpg", None,
     "'parts' is a JSON string"),
    ("image_missing", _set(("gone.jpg",), {"parts": {}}), "gone.jpg", None,
     "image file not found"),
    ("declared_size_differs", _set(("a.jpg", "image", "width"), 640), "a.jpg", None,
     "declared size 640x48 (width x height) differs from the file's 64x48"),
    ("declared_size_not_number", _set(("a.jpg", "image", "height"), "48"), "a.jpg", None,
     "declared image height '48' is not a whole number"),
    ("unknown_state", _set(("a.jpg", "parts", "bell", "object_state"), "broken"), "a.jpg", "bell",
     "unknown state 'broken' (expected one of intact, damaged, absent, occluded)"),
    ("state_class_disagrees", _set(("a.jpg", "parts", "bell", "object_state_class"), 0), "a.jpg",
     "bell", "object_state_class 0 (intact) disagrees with object_state 'absent' (2)"),
    ("state_class_out_of_range", _set(("a.jpg", "parts", "bell", "object_state_class"), 7),
     "a.jpg", "bell", "object_state_class 7 is not a state id"),
    ("state_missing", lambda ann: [ann["a.jpg"]["parts"]["bell"].pop(k) for k in
                                   ("object_state", "object_state_class")], "a.jpg", "bell",
     "missing state"),
    ("box_value_string", _set(BOX + ("left",), "1"), "a.jpg", "bell",
     "non-numeric box value: left '1'"),
    ("box_value_null", _set(BOX + ("width",), None), "a.jpg", "bell",
     "non-numeric box value: width None"),
    ("box_value_bool", _set(BOX + ("top",), True), "a.jpg", "bell",
     "non-numeric box value: top True"),
    ("box_value_nan", _set(BOX + ("height",), float("nan")), "a.jpg", "bell",
     "non-numeric box value: height nan"),
    ("box_key_missing", _delete(BOX + ("height",)), "a.jpg", "bell", "box lacks height"),
    ("box_missing", _delete(BOX), "a.jpg", "bell", "missing absolute_bounding_box"),
    ("negative_width", _set(BOX + ("width",), -3), "a.jpg", "bell", "negative box width -3"),
    ("negative_height", _set(BOX + ("height",), -0.5), "a.jpg", "bell",
     "negative box height -0.5"),
    ("zero_width", _set(BOX + ("width",), 0), "a.jpg", "bell", "zero-size box (width 0)"),
    ("zero_height", _set(BOX + ("height",), 0), "a.jpg", "bell", "zero-size box (height 0)"),
    ("box_right_of_image", _set(BOX + ("left",), W + 5), "a.jpg", "bell",
     f"box wholly outside the {W}x{H} image (left {W + 5}, top 2, width 3, height 4)"),
    ("box_above_image", _set(BOX + ("top",), -4), "a.jpg", "bell", "box wholly outside"),
    ("part_not_object", _set(("a.jpg", "parts", "bell"), 3), "a.jpg", "bell",
     "part is a JSON number"),
    ("part_name_differs_from_key", _set(("a.jpg", "parts", "bell", "part_name"), "lock"), "a.jpg",
     "bell", "part_name 'lock' differs from its key 'bell'"),
    ("part_without_name", _set(("sub/c.png", "parts"), [part("saddle", 1, 1, 2, 2)]
                               + [{k: v for k, v in part("x", 1, 1, 2, 2).items()
                                   if k != "part_name"}]),
     "sub/c.png", "part #1", "part has no name"),
    ("trust_not_number", _set(("a.jpg", "parts", "bell", "trust"), "high"), "a.jpg", "bell",
     "trust 'high' is not a number"),
]


@pytest.mark.parametrize("case", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_each_rule_is_reported_by_image_and_part(dataset_dir, case):
    _, edit, image, part_name, words = case
    ann = good_annotations()
    edit(ann)
    json_path = dataset_dir["write"](ann)
    with pytest.raises(DataError) as info:
        load_delftbikes(json_path, dataset_dir["images"])
    assert str(info.value) == f"{json_path}: 1 problem in annotations"
    assert len(info.value.details) == 1
    where = image if part_name is None else f"{image} / {part_name}"
    assert info.value.details[0].startswith(where + ": ")
    assert words in info.value.details[0]

    ds = load_delftbikes(json_path, dataset_dir["images"], on_invalid="skip")
    assert [(p.image, p.part) for p in ds.problems] == [(image, part_name)]
    if part_name is None:  # image-level problems drop the image, box-level ones the box
        assert ds.dropped_images == 1 and ds.dropped_boxes == 0
        assert image not in [r["file_name"] for r in ds.images]
    else:
        assert ds.dropped_images == 0 and ds.dropped_boxes == 1
        kept = {r["file_name"]: [p["part_name"] for p in r["parts"]] for r in ds.images}
        assert part_name not in kept[image]


@pytest.mark.parametrize("content,words", [
    (b"", "unreadable image"),                                   # zero-byte file
    (b"this is not an image at all" * 10, "unreadable image"),   # garbage
    ("truncated-jpeg", "truncated JPEG (no end-of-image marker)"),
    ("truncated-png", "truncated PNG"),
], ids=["zero_bytes", "garbage", "truncated_jpeg", "truncated_png"])
def test_unreadable_images_are_reported(dataset_dir, content, words):
    images = dataset_dir["images"]
    if content == "truncated-jpeg":
        # Noise, so that most of the file is pixel data and the cut leaves the header whole.
        noise = Image.effect_noise((W, H), 60).convert("RGB")
        noise.save(os.path.join(images, "a.jpg"), quality=95)
        data = open(os.path.join(images, "a.jpg"), "rb").read()
        content = data[: len(data) * 2 // 3]
    elif content == "truncated-png":
        data = open(os.path.join(images, "sub", "c.png"), "rb").read()
        content = data[: len(data) - 20]
    target = "sub/c.png" if "png" in words.lower() else "a.jpg"
    with open(os.path.join(images, target), "wb") as f:
        f.write(content)
    with pytest.raises(DataError) as info:
        load(dataset_dir, good_annotations())
    assert len(info.value.details) == 1
    assert info.value.details[0].startswith(f"{target}: ")
    assert words in info.value.details[0]


def test_every_problem_is_listed_in_file_order(dataset_dir):
    ann = good_annotations()
    ann["b.jpg"]["parts"]["saddle"]["object_state"] = "gone"
    ann["a.jpg"]["parts"]["bell"]["absolute_bounding_box"]["width"] = 0
    ann["a.jpg"]["parts"]["front_wheel"]["absolute_bounding_box"]["left"] = "x"
    ann["zz.jpg"] = {"parts": {}}
    with pytest.raises(DataError) as info:
        load(dataset_dir, ann)
    assert str(info.value).endswith(": 4 problems in annotations")
    assert [line.split(":")[0] for line in info.value.details] == [
        "b.jpg / saddle", "a.jpg / bell", "a.jpg / front_wheel", "zz.jpg"]


def test_partly_outside_boxes_are_clipped_and_counted(dataset_dir):
    ann = good_annotations()
    parts = ann["a.jpg"]["parts"]
    parts["bell"]["absolute_bounding_box"] = {"left": -4, "top": -2, "width": 10, "height": 6}
    parts["front_wheel"]["absolute_bounding_box"] = {"left": 50, "top": 40.5, "width": 30,
                                                     "height": 20}
    ann["b.jpg"]["parts"]["saddle"]["absolute_bounding_box"] = {"left": 0, "top": 0,
                                                                "width": W, "height": H}
    ds = load(dataset_dir, ann)  # clipping is not a problem: no error in "error" mode
    assert ds.problems == [] and ds.clipped == 2
    boxes = {p["part_name"]: p["bbox"] for p in ds.images[0]["parts"]}
    assert boxes["bell"] == [0, 0, 6, 4]
    assert boxes["front_wheel"] == [50, 40.5, W - 50, H - 40.5]
    assert ds.images[1]["parts"][0]["bbox"] == [0, 0, W, H]  # touching the border: kept as is


def test_unknown_part_names_are_allowed(dataset_dir):
    ann = good_annotations()
    ann["a.jpg"]["parts"]["mirror"] = part("mirror", 3, 3, 5, 5, "intact")
    ds = load(dataset_dir, ann)
    assert "mirror" in [p["part_name"] for p in ds.images[0]["parts"]]


def test_state_may_be_given_by_name_or_class_alone():
    assert parse_part_state({"object_state": "occluded"}) == (3, None)
    assert parse_part_state({"object_state_class": 1}) == (1, None)
    assert parse_part_state({"object_state": "absent", "object_state_class": 2}) == (2, None)


@pytest.mark.parametrize("text,words", [
    ('{"a.jpg": {"parts": {}}', "unparsable JSON at line 1, column 24"),
    ('{\n  "a.jpg": {"parts": {},\n}', "unparsable JSON at line 3, column 1"),
    ("", "unparsable JSON at line 1, column 1"),
    ('[{"a.jpg": {}}]', "expected a JSON object keyed by image file name, found a JSON array"),
    ('"a.jpg"', "found a JSON string"),
])
def test_file_level_problems_stop_in_both_modes(dataset_dir, text, words):
    json_path, errors = errors_in_both_modes(dataset_dir, text)
    for error in errors:
        assert str(error).startswith(f"{json_path}: ")
        assert words in str(error)


def errors_in_both_modes(dataset_dir, text):
    """(annotation file, the DataError of loading it with on_invalid error, with skip)."""
    json_path = dataset_dir["write"](None, text=text)
    errors = []
    for mode in ("error", "skip"):
        with pytest.raises(DataError) as info:
            load_delftbikes(json_path, dataset_dir["images"], on_invalid=mode)
        errors.append(info.value)
    return json_path, errors


@pytest.mark.parametrize("text,detail", [
    ('{"a.jpg": {"parts": {}}, "b.jpg": {"parts": {}}, "a.jpg": {"parts": {}}}',
     "a.jpg: the image has 2 records"),
    ('{"a.jpg": {"parts": {}}, "./a.jpg": {"parts": {}}}', "a.jpg and ./a.jpg: keys of one"),
    ('{"a.jpg": {"parts": {"bell": {}, "bell": {}}}}', "a.jpg, part bell: given twice"),
    ('{"a.jpg": {"parts": {"bell": {"trust": 1, "trust": 0}}}}',
     "a.jpg, part bell: field 'trust' given twice"),
])
def test_repeated_keys_stop_in_both_modes_naming_image_and_part(dataset_dir, text, detail):
    """JSON keeps the last of repeated keys: a record or a box would vanish without a word."""
    json_path, errors = errors_in_both_modes(dataset_dir, text)
    for error in errors:
        assert str(error).startswith(f"{json_path}: 1 repeated key")
        assert [detail in line for line in error.details] == [True]


def test_missing_files_and_bad_mode(dataset_dir):
    json_path = dataset_dir["write"](good_annotations())
    with pytest.raises(DataError, match="annotation file not found"):
        load_delftbikes(str(dataset_dir["root"] / "nope.json"), dataset_dir["images"])
    with pytest.raises(DataError, match="images folder not found"):
        load_delftbikes(json_path, str(dataset_dir["root"] / "no_images"))
    with pytest.raises(ConfigError, match="on_invalid"):
        load_delftbikes(json_path, dataset_dir["images"], on_invalid="ignore")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_on_the_stored_pixels_land_on_the_upright_view(dataset_dir, orientation):
    """A camera JPEG stored 64x48 with EXIF orientation 1..8 and a red block annotated on the
    stored pixels: the converted size and box are those of the upright view, which
    read_image (training, evaluation, inference) gives, and the box covers the red block
    there."""
    from bikestate.utils.images import read_image

    stored = Image.new("RGB", (W, H), (40, 40, 40))
    stored.paste((255, 0, 0), (8, 4, 24, 12))  # x 8..24, y 4..12 on the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(os.path.join(dataset_dir["images"], "a.jpg"), exif=exif, quality=98)
    ann = {"a.jpg": {"image": {"height": H, "width": W},
                     "parts": {"saddle": part("saddle", 8, 4, 16, 8)}}}
    ds = load(dataset_dir, ann)
    record = ds.images[0]
    upright = read_image(os.path.join(dataset_dir["images"], "a.jpg"), format="RGB")
    assert (record["height"], record["width"]) == upright.shape[:2]
    assert ds.exif_transposed == int(orientation >= 5)
    x, y, w, h = (round(v) for v in record["parts"][0]["bbox"])
    inside = upright[y:y + h, x:x + w].astype(int)
    assert w * h == 16 * 8 and (inside[..., 0] > 200).mean() > 0.9, (orientation, x, y, w, h)
    assert (upright[..., 0] > 200).sum() < 16 * 8 * 1.2  # the block is nowhere else


def test_boxes_annotated_on_the_turned_view_are_kept(dataset_dir):
    """A declared size that is the view EXIF orientation 6 turns by 90 degrees says the boxes
    were drawn on that view: size and boxes are kept as they are."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (W, H)).save(os.path.join(dataset_dir["images"], "a.jpg"), exif=exif)
    ann = {"a.jpg": {"image": {"height": W, "width": H},
                     "parts": {"saddle": part("saddle", 2, 40, 30, 20)}}}
    record = load(dataset_dir, ann).images[0]
    assert (record["height"], record["width"]) == (W, H)
    assert record["parts"][0]["bbox"] == [2, 40, 30, 20]
    ann["a.jpg"]["image"] = {"height": W + 1, "width": H}
    with pytest.raises(DataError) as info:
        load(dataset_dir, ann)
    assert f"declared size {H}x{W + 1}" in info.value.details[0]


def test_input_file_is_not_modified(dataset_dir):
    ann = good_annotations()
    ann["a.jpg"]["parts"]["bell"]["absolute_bounding_box"]["left"] = -2  # gets clipped
    json_path = dataset_dir["write"](ann)
    before = open(json_path, "rb").read()
    snapshot = copy.deepcopy(ann)
    load_delftbikes(json_path, dataset_dir["images"])
    assert open(json_path, "rb").read() == before
    assert ann == snapshot
