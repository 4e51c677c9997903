"""BikeStateDatasetMapper: gt_states stay with their boxes through resize, flip, crop and filtering.

The data is real: SynthBikes (the `synth_small` fixture) converted to COCO with states by
convert_to_coco and registered with register_bike_instances, plus small hand-written COCO files
for the edge cases (an image without parts, a broken image).
"""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from coco_builders import coco_with_states, write_json

from bikestate import add_bikestate_config
from bikestate.constants import PART_NAMES, STATE_IDS, STATE_NAMES
from bikestate.data import (
    BikeStateDatasetMapper,
    RandomSaturationWithFormat,
    UnreadableImageError,
    build_bike_augmentation,
    convert_to_coco,
    register_bike_instances,
    unregister_bike_dataset,
)
from bikestate.utils.errors import ConfigError, DataError


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def synth_dataset(synth_small, tmp_path_factory):
    """SynthBikes -> COCO -> registered dataset; returns (dataset dicts, DelftBikes JSON)."""
    out = tmp_path_factory.mktemp("mapper_coco")
    coco_path = os.path.join(str(out), "synth_coco.json")
    convert_to_coco(synth_small["json"], synth_small["images"], coco_path, verbose=False)
    name = "test_mapper_synth"
    register_bike_instances(name, coco_path, synth_small["images"])
    yield DatasetCatalog.get(name), json.load(open(synth_small["json"], encoding="utf-8"))
    unregister_bike_dataset(name)


def expected_parts(delft_image, width, height, transform=None):
    """(class id, XYXY box, state) of every part as written in the DelftBikes JSON, after the
    geometry a test applies by hand: clip to the image (as the conversion does), then
    ``transform(box) -> box or None`` (None: the box is expected to be filtered out)."""
    rows = []
    for part in delft_image["parts"].values():
        b = part["absolute_bounding_box"]
        x1, y1 = max(b["left"], 0), max(b["top"], 0)
        x2, y2 = min(b["left"] + b["width"], width), min(b["top"] + b["height"], height)
        box = np.array([x1, y1, x2, y2], dtype=np.float64)
        if transform is not None:
            box = transform(box)
            if box is None:
                continue
        rows.append((PART_NAMES.index(part["part_name"]), box, STATE_IDS[part["object_state"]]))
    return rows


def assert_instances_match(instances, expected):
    """Every expected (class, box, state) is found exactly once in the Instances, and no more."""
    boxes = instances.gt_boxes.tensor.numpy()
    classes = instances.gt_classes.tolist()
    states = instances.gt_states.tolist()
    assert instances.gt_states.dtype == torch.int64
    assert len(boxes) == len(classes) == len(states) == len(expected)
    unused = set(range(len(boxes)))
    for cls, box, state in expected:
        hits = [i for i in unused if classes[i] == cls and np.allclose(boxes[i], box, atol=0.05)]
        assert hits, f"no box for {PART_NAMES[cls]} at {box}"
        assert states[hits[0]] == state, (
            f"{PART_NAMES[cls]} at {box}: state {states[hits[0]]}, JSON says {state}")
        unused.remove(hits[0])


def small_cfg():
    cfg = get_cfg()
    add_bikestate_config(cfg)
    return cfg


def write_coco(folder, images, annotations):
    """A hand-written COCO-with-states file plus gray JPEGs; returns (json path, image root)."""
    root = os.path.join(folder, "images")
    os.makedirs(root, exist_ok=True)
    for img in images:
        Image.fromarray(np.full((img["height"], img["width"], 3), 128, np.uint8)).save(
            os.path.join(root, img["file_name"]))
    path = write_json(coco_with_states(images, annotations), os.path.join(folder, "coco.json"))
    return path, root


def load_handwritten(tmp_path, name, images, annotations):
    path, root = write_coco(str(tmp_path), images, annotations)
    register_bike_instances(name, path, root)
    try:
        return DatasetCatalog.get(name)
    finally:
        unregister_bike_dataset(name)


# ------------------------------------------------------------------------------ SynthBikes


def test_states_follow_boxes_without_geometric_change(synth_dataset):
    dicts, delft = synth_dataset
    cfg = small_cfg()
    h, w = dicts[0]["height"], dicts[0]["width"]
    cfg.INPUT.MIN_SIZE_TRAIN = (min(h, w),)  # resize to the same size: geometry unchanged
    cfg.INPUT.MAX_SIZE_TRAIN = 10 * max(h, w)
    cfg.INPUT.RANDOM_FLIP = "none"
    mapper = BikeStateDatasetMapper(cfg, is_train=True)  # from_config path, colour jitter on
    compared = 0
    for d in dicts:
        out = mapper(d)
        assert out["image"].shape == (3, d["height"], d["width"])
        expected = expected_parts(delft[os.path.basename(d["file_name"])], d["width"], d["height"])
        assert_instances_match(out["instances"], expected)
        compared += len(expected)
    assert compared >= 12 * 20  # 22 parts per image, a few may be clipped away


def test_states_follow_boxes_through_resize_and_forced_flip(synth_dataset):
    dicts, delft = synth_dataset
    scale = 2.0
    mapper = BikeStateDatasetMapper(
        is_train=True, image_format="BGR",
        augmentations=[T.Resize((int(dicts[0]["height"] * scale), int(dicts[0]["width"] * scale))),
                       T.RandomFlip(prob=1.0, horizontal=True, vertical=False)],
    )
    for d in dicts[:6]:
        out = mapper(d)
        width = d["width"] * scale

        def resize_and_flip(box):
            x1, y1, x2, y2 = box * scale
            return np.array([width - x2, y1, width - x1, y2])

        expected = expected_parts(delft[os.path.basename(d["file_name"])], d["width"],
                                  d["height"], resize_and_flip)
        # The flip mirrors the boxes but keeps part names and states: a mirrored bike's front
        # wheel is still its front wheel (see build_bike_augmentation).
        assert_instances_match(out["instances"], expected)


def test_crop_filters_emptied_boxes_and_keeps_states_aligned(synth_dataset):
    dicts, delft = synth_dataset
    h, w = dicts[0]["height"], dicts[0]["width"]
    x0, y0, cw, ch = w // 4, 0, w // 3, h  # a vertical strip: most parts fall outside it
    mapper = BikeStateDatasetMapper(is_train=True, image_format="BGR",
                                    augmentations=[T.CropTransform(x0, y0, cw, ch)])
    filtered = 0
    for d in dicts:
        out = mapper(d)
        assert out["image"].shape == (3, ch, cw)

        def crop(box):
            x1, y1, x2, y2 = box - [x0, y0, x0, y0]
            x1, x2 = np.clip([x1, x2], 0, cw)
            y1, y2 = np.clip([y1, y2], 0, ch)
            # filter_empty_instances drops boxes whose side is not above 1e-5
            return np.array([x1, y1, x2, y2]) if x2 - x1 > 1e-5 and y2 - y1 > 1e-5 else None

        image = delft[os.path.basename(d["file_name"])]
        expected = expected_parts(image, d["width"], d["height"], crop)
        filtered += len(image["parts"]) - len(expected)
        assert_instances_match(out["instances"], expected)
    assert filtered > 0, "the crop should have emptied some boxes"


def test_boxes_are_detectron2s_per_annotation_boxes_bit_for_bit(synth_dataset):
    """transform_boxes does at once what detectron2's transform_instance_annotations and
    annotations_to_instances do box by box: the same float32 boxes, exactly, for boxes in
    either mode, on whole pixels or not, through crop, resize and flip.

    One difference, on purpose: a box of four Python ints is scaled in floating point, where
    detectron2 scales it in integer arithmetic and drops the fractions."""
    from detectron2.data import detection_utils as utils
    from detectron2.structures import BoxMode

    from bikestate.data.mapper import transform_boxes

    dicts, _ = synth_dataset
    rng = np.random.default_rng(0)
    compared = 0
    for k, d in enumerate(dicts[:6]):
        annos = [dict(a) for a in d["annotations"]]
        for i, a in enumerate(annos):
            if i % 3 == 1:  # some boxes in XYXY, some with whole-pixel coordinates
                a["bbox"] = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
                a["bbox_mode"] = BoxMode.XYXY_ABS
            elif i % 3 == 2:
                a["bbox"] = [float(round(v)) for v in a["bbox"]]
        h, w = d["height"], d["width"]
        transforms = T.TransformList([
            T.CropTransform(int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4)),
                            w // 2 + k * 7, h // 2 + k * 5),
            T.ResizeTransform(h // 2 + k * 5, w // 2 + k * 7, 301 + k, 403 - k),
            T.HFlipTransform(403 - k) if k % 2 else T.NoOpTransform()])
        image_shape = (301 + k, 403 - k)
        reference = utils.annotations_to_instances(
            [utils.transform_instance_annotations(dict(a), transforms, image_shape)
             for a in annos], image_shape).gt_boxes.tensor
        ours = torch.as_tensor(transform_boxes(annos, transforms, image_shape), dtype=torch.float32)
        assert torch.equal(ours, reference)
        compared += len(annos)
        as_ints = [dict(a, bbox=[int(v) for v in a["bbox"]]) if i % 3 == 2 else a
                   for i, a in enumerate(annos)]
        assert np.array_equal(transform_boxes(as_ints, transforms, image_shape),
                              transform_boxes(annos, transforms, image_shape))
    assert compared > 100
    assert transform_boxes([], transforms, image_shape).shape == (0, 4)


def test_test_time_mapper_drops_annotations(synth_dataset):
    dicts, _ = synth_dataset
    cfg = small_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 120
    mapper = BikeStateDatasetMapper(cfg, is_train=False)
    out = mapper(dicts[0])
    assert "annotations" not in out and "instances" not in out
    assert min(out["image"].shape[1:]) == 120
    assert "annotations" in dicts[0], "the mapper must not modify its input"


# ------------------------------------------------------------------------------ edge cases


def test_image_without_annotations_gives_empty_instances(tmp_path):
    images = [{"id": 1, "file_name": "empty.jpg", "height": 60, "width": 80},
              {"id": 2, "file_name": "one.jpg", "height": 60, "width": 80}]
    annotations = [{"id": 1, "image_id": 2, "category_id": 21, "bbox": [10, 10, 20, 20],
                    "area": 400, "iscrowd": 0, "state": 3, "state_name": "occluded"}]
    dicts = load_handwritten(tmp_path, "test_mapper_empty", images, annotations)
    assert [len(d["annotations"]) for d in dicts] == [0, 1]
    cfg = small_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (60,)
    mapper = BikeStateDatasetMapper(cfg, is_train=True)
    empty = mapper(dicts[0])["instances"]
    assert len(empty) == 0
    assert empty.gt_boxes.tensor.shape == (0, 4)
    assert empty.gt_classes.dtype == torch.int64 and empty.gt_states.dtype == torch.int64
    assert empty.gt_states.shape == (0,)
    one = mapper(dicts[1])["instances"]
    assert one.gt_classes.tolist() == [20] and one.gt_states.tolist() == [3]


def test_zero_area_box_is_filtered_with_its_state(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100,
         "iscrowd": 0, "state": 1},
        # inside the image but outside the crop below: clipped to zero width, then filtered
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 5, 10, 10], "area": 100,
         "iscrowd": 0, "state": 2},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [20, 30, 10, 10], "area": 100,
         "iscrowd": 0, "state": 3},
    ]
    dicts = load_handwritten(tmp_path, "test_mapper_zero", images, annotations)
    mapper = BikeStateDatasetMapper(is_train=True, image_format="BGR",
                                    augmentations=[T.CropTransform(0, 0, 40, 60)])
    inst = mapper(dicts[0])["instances"]
    assert inst.gt_classes.tolist() == [0, 2]
    assert inst.gt_states.tolist() == [1, 3]
    assert inst.gt_boxes.tensor.tolist() == [[5, 5, 15, 15], [20, 30, 30, 40]]


def test_unreadable_and_missing_images_raise_a_catchable_error(tmp_path):
    images = [{"id": 1, "file_name": "broken.jpg", "height": 60, "width": 80},
              {"id": 2, "file_name": "gone.jpg", "height": 60, "width": 80},
              {"id": 3, "file_name": "small.jpg", "height": 61, "width": 80}]
    path, root = write_coco(str(tmp_path), images[:1], [])
    with open(os.path.join(root, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG")
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(os.path.join(root, "small.jpg"))
    mapper = BikeStateDatasetMapper(is_train=True, image_format="BGR", augmentations=[])
    for img in images:
        d = {"file_name": os.path.join(root, img["file_name"]), "height": img["height"],
             "width": img["width"], "image_id": img["id"], "annotations": []}
        with pytest.raises(UnreadableImageError) as info:
            mapper(d)
        assert info.value.file_name == d["file_name"]
        assert img["file_name"] in str(info.value)
        assert isinstance(info.value, DataError)


def test_annotation_without_state_is_a_clear_error(tmp_path):
    path, root = write_coco(str(tmp_path), [{"id": 1, "file_name": "a.jpg", "height": 60,
                                             "width": 80}], [])
    d = {"file_name": os.path.join(root, "a.jpg"), "height": 60, "width": 80, "image_id": 1,
         "annotations": [{"bbox": [1, 1, 5, 5], "bbox_mode": 1, "category_id": 0, "iscrowd": 0}]}
    mapper = BikeStateDatasetMapper(is_train=True, image_format="BGR", augmentations=[])
    with pytest.raises(DataError, match="a.jpg.*no 'state'"):
        mapper(d)


# ------------------------------------------------------------------------------ augmentation


def test_build_bike_augmentation_follows_the_config():
    cfg = small_cfg()
    cfg.INPUT.CROP.ENABLED = True
    train = build_bike_augmentation(cfg, is_train=True)
    kinds = [type(a).__name__ for a in train]
    assert kinds == ["RandomCrop", "ResizeShortestEdge", "RandomFlip", "RandomBrightness",
                     "RandomContrast", "RandomSaturationWithFormat"]
    assert train[-1].image_format == cfg.INPUT.FORMAT
    assert [type(a).__name__ for a in build_bike_augmentation(cfg, is_train=False)] == \
        ["ResizeShortestEdge"]
    cfg.INPUT.COLOR_JITTER.ENABLED = False
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    assert [type(a).__name__ for a in build_bike_augmentation(cfg, is_train=True)] == \
        ["ResizeShortestEdge"]


def test_saturation_jitter_treats_bgr_like_rgb():
    """The same photo in BGR and in RGB is desaturated towards the same grey."""
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, size=(16, 16, 3)).astype(np.uint8)
    bgr = rgb[:, :, ::-1].copy()
    np.random.seed(1)
    out_rgb = RandomSaturationWithFormat(0.3, 0.3, "RGB")(T.AugInput(rgb)).apply_image(rgb)
    np.random.seed(1)
    out_bgr = RandomSaturationWithFormat(0.3, 0.3, "BGR")(T.AugInput(bgr)).apply_image(bgr)
    assert not np.array_equal(out_rgb, rgb)
    np.testing.assert_array_equal(out_bgr[:, :, ::-1], out_rgb)
    # detectron2's own RandomSaturation on BGR input gives another (wrong) grey
    np.random.seed(1)
    d2_bgr = T.RandomSaturation(0.3, 0.3)(T.AugInput(bgr.copy())).apply_image(bgr)
    assert not np.array_equal(d2_bgr[:, :, ::-1], out_rgb)


def test_train_drop_states_leaves_out_those_boxes_and_keeps_the_others_aligned(synth_dataset):
    dicts, delft = synth_dataset
    cfg = small_cfg()
    h, w = dicts[0]["height"], dicts[0]["width"]
    cfg.INPUT.MIN_SIZE_TRAIN = (min(h, w),)
    cfg.INPUT.MAX_SIZE_TRAIN = 10 * max(h, w)
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.BIKESTATE.DATA.TRAIN_DROP_STATES = ["absent"]
    mapper = BikeStateDatasetMapper(cfg, is_train=True)
    absent = STATE_NAMES.index("absent")
    dropped = 0
    for d in dicts:
        out = mapper(d)
        expected = expected_parts(delft[os.path.basename(d["file_name"])], d["width"], d["height"])
        kept = [e for e in expected if e[2] != absent]
        dropped += len(expected) - len(kept)
        assert_instances_match(out["instances"], kept)
    assert dropped > 0  # the set has absent parts, so something was left out


def test_unknown_train_drop_state_is_a_config_error():
    cfg = small_cfg()
    cfg.BIKESTATE.DATA.TRAIN_DROP_STATES = ["broken"]
    with pytest.raises(ConfigError, match="TRAIN_DROP_STATES: unknown state.*'broken'"):
        BikeStateDatasetMapper(cfg, is_train=True)
