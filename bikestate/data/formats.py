"""Annotation file formats: which one a file is, and what a COCO-with-states file holds.

Two formats reach bikestate (docs/data_formats.md): DelftBikes JSON (an object keyed by image
file name, read by :mod:`.delftbikes`) and COCO with a ``state`` on every annotation (written by
:mod:`.coco`). Reading these needs neither torch nor detectron2.
"""
from ..constants import STATE_NAMES
from ..utils.errors import DataError
from ..utils.io import read_json

__all__ = ["detect_annotation_format", "summarize_coco"]


def detect_annotation_format(obj):
    """``"coco"`` for a COCO object (a list under ``"images"``), else ``"delftbikes"``.

    A DelftBikes file is an object keyed by image file name whose values are objects, so a
    list-valued ``"images"`` key cannot be one of its entries.
    """
    if isinstance(obj, dict) and isinstance(obj.get("images"), list):
        return "coco"
    return "delftbikes"


def summarize_coco(json_file, obj=None):
    """Check a COCO-with-states file and return what its metadata needs.

    Returns:
        dict with ``thing_classes`` (names sorted by category id, as load_coco_json orders
        them), ``thing_dataset_id_to_contiguous_id``, ``state_classes``, ``num_images``,
        ``num_annotations``.
    """
    if obj is None:
        obj = read_json(json_file)
    if detect_annotation_format(obj) != "coco":
        raise DataError(
            f"{json_file} is not a COCO file (no 'images' list); DelftBikes-format files are "
            "converted by register_bike_datasets or tools/convert_to_coco.py"
        )
    categories = obj.get("categories") or []
    if not categories:
        raise DataError(f"{json_file}: COCO file has no categories")
    categories = sorted(categories, key=lambda c: c["id"])
    cat_ids = [c["id"] for c in categories]
    if len(set(cat_ids)) != len(cat_ids):
        raise DataError(f"{json_file}: duplicate category ids {cat_ids}")

    state_classes = list(STATE_NAMES)
    if obj.get("state_categories"):
        state_cats = sorted(obj["state_categories"], key=lambda c: c["id"])
        if [c["id"] for c in state_cats] != list(range(len(state_cats))):
            raise DataError(f"{json_file}: state_categories ids must be 0..K-1, got "
                            f"{[c['id'] for c in state_cats]}")
        state_classes = [c["name"] for c in state_cats]

    # Every annotation needs a state the model can train on; report all problems at once.
    image_names = {img.get("id"): img.get("file_name", "?") for img in obj["images"]}
    cat_names = {c["id"]: c["name"] for c in categories}
    problems = []
    annotations = obj.get("annotations") or []
    for ann in annotations:
        state = ann.get("state")
        if not isinstance(state, int) or isinstance(state, bool) or not (
            0 <= state < len(state_classes)
        ):
            where = (f"image {image_names.get(ann.get('image_id'), ann.get('image_id'))}, "
                     f"part {cat_names.get(ann.get('category_id'), ann.get('category_id'))}")
            what = ("no 'state'" if state is None
                    else f"state {state!r} not in 0..{len(state_classes) - 1}")
            problems.append(f"{where}: {what}")
    if problems:
        raise DataError(
            f"{json_file}: {len(problems)} annotation(s) without a valid state "
            "(is this a COCO-with-states file from convert_to_coco?)",
            details=problems[:20]
            + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []),
        )
    return {
        "thing_classes": [c["name"] for c in categories],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(cat_ids)},
        "state_classes": state_classes,
        "num_images": len(obj["images"]),
        "num_annotations": len(annotations),
    }
