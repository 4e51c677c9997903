"""Builders of COCO-with-states ground truth (docs/data_formats.md) for the tests."""
import json

from bikestate.constants import PART_NAMES, STATE_NAMES


def coco_annotation(ann_id, image_id, category_id, box_xyxy, state, *, state_name=False,
                    trust=None):
    """One annotation: ``bbox`` [x, y, w, h] and ``area`` from an XYXY box, ``iscrowd`` 0."""
    x0, y0, x1, y1 = box_xyxy
    ann = {"id": ann_id, "image_id": image_id, "category_id": category_id,
           "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
           "state": state}
    if state_name:
        ann["state_name"] = STATE_NAMES[state]
    if trust is not None:
        ann["trust"] = trust
    return ann


def coco_with_states(images, annotations, categories=PART_NAMES, state_categories=True):
    """A COCO-with-states dict.

    Args:
        images (list[dict]): COCO image entries.
        annotations (list[dict]): COCO annotations with ``state`` (see :func:`coco_annotation`).
        categories (list[str] or list[dict]): names (ids 1..K) or COCO category entries.
        state_categories (bool): add the top-level ``state_categories`` list.
    """
    if categories and isinstance(categories[0], str):
        categories = [{"id": k + 1, "name": name} for k, name in enumerate(categories)]
    coco = {"images": list(images), "annotations": list(annotations),
            "categories": list(categories)}
    if state_categories:
        coco["state_categories"] = [{"id": s, "name": n} for s, n in enumerate(STATE_NAMES)]
    return coco


def write_json(obj, path):
    """Write ``obj`` as JSON to ``path`` (str or Path); return ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    return path
