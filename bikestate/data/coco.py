"""Conversion of DelftBikes annotations to COCO detection JSON with per-box states.

The output is standard COCO (pycocotools and detectron2's ``load_coco_json`` read it) plus (docs/data_formats.md)
``"state"``, ``"state_name"`` and ``"trust"`` on every annotation and a top-level
``"state_categories"`` list. The conversion is strict: the input
is validated first (:mod:`bikestate.data.delftbikes`) and the output appears atomically.
"""
import json
import os
from collections import Counter

from tabulate import tabulate

from ..constants import PART_NAMES, STATE_NAMES
from ..utils.errors import ConfigError, DataError
from ..utils.io import atomic_write_json, atomic_write_texts
from .delftbikes import load_delftbikes

__all__ = ["convert_to_coco", "category_names_for", "load_coco_states", "problems_report_path",
           "format_statistics"]


def category_names_for(part_names):
    """The category list of a dataset whose boxes carry ``part_names``.

    When every name is a DelftBikes part, the categories are all 22 :data:`PART_NAMES` in their
    order, so ``category_id`` is always the index plus one and a train file and a
    val file that happen to miss different parts still agree on ids. A dataset with other parts
    gets the DelftBikes parts it uses, in their order, then its other names sorted.
    """
    found = set(part_names)
    unknown = sorted(found - set(PART_NAMES))
    if not unknown:
        return list(PART_NAMES)
    return [p for p in PART_NAMES if p in found] + unknown


def problems_report_path(save_path):
    """Where the problems report of ``save_path`` goes: ``<stem>.problems.txt`` next to it."""
    stem, _ = os.path.splitext(save_path)
    return stem + ".problems.txt"


def convert_to_coco(json_path, images_dir, save_path, on_invalid="error", categories=None,
                    verbose=True):
    """Convert a DelftBikes annotation file to COCO JSON with states.

    Args:
        json_path (str): DelftBikes annotations (never modified).
        images_dir (str): folder of the images; sizes missing from the JSON are read from files.
        save_path (str): the COCO JSON to write (atomically; its folder is created).
        on_invalid (str): "error": any problem raises and nothing is written. "skip": invalid
            boxes and images are dropped, the output is written and every problem is listed in
            ``<save_path stem>.problems.txt`` next to it.
        categories (list[str] or None): category names in id order; None derives them from the
            parts found (:func:`category_names_for`). Give a train file's names when converting
            its val file of a dataset with non-DelftBikes parts, so the ids agree.
        verbose (bool): print the statistics table (and a progress bar while validating).

    Returns:
        dict: statistics: ``images``, ``annotations``, ``boxes_per_part`` and
        ``boxes_per_state`` (name -> count), ``clipped``, ``dropped_boxes``, ``dropped_images``,
        ``problems``, ``exif_transposed``, ``save_path`` and ``problems_path`` (or None).

    Raises:
        DataError: invalid input (all problems listed in ``details``), or no image left.
        ConfigError: ``save_path`` is the input, or cannot be written.
    """
    if _same_file(json_path, save_path):
        raise ConfigError(f"{save_path}: the output would overwrite the input annotations")
    dataset = load_delftbikes(json_path, images_dir, on_invalid=on_invalid, show_progress=verbose)
    if not dataset.images:
        why = (f" ({dataset.dropped_images} dropped as invalid)" if dataset.dropped_images else "")
        raise DataError(f"{json_path}: no usable images in annotations{why}",
                        details=[str(p) for p in dataset.problems])

    found = [p["part_name"] for r in dataset.images for p in r["parts"]]
    if categories is None:
        categories = category_names_for(found)
    else:
        categories = list(categories)
        if len(set(categories)) != len(categories):
            raise ConfigError(f"category names repeat: {categories}")
        missing = sorted(set(found) - set(categories))
        if missing:
            raise DataError(f"{json_path}: parts not in the given category list: "
                            + ", ".join(missing))
    category_ids = {name: i + 1 for i, name in enumerate(categories)}

    coco = {
        "info": {"description": "bikestate COCO with part states",
                 "source": os.path.basename(json_path)},
        "images": [],
        "annotations": [],
        "categories": [{"id": category_ids[n], "name": n, "supercategory": "bike_part"}
                       for n in categories],
        "state_categories": [{"id": i, "name": n} for i, n in enumerate(STATE_NAMES)],
    }
    # Ids follow file-name order (load_delftbikes sorts) and part order in the file, so the
    # same input always gives the same ids, whatever order the images were listed in.
    for image_id, record in enumerate(dataset.images, start=1):
        coco["images"].append({"id": image_id, "file_name": record["file_name"],
                               "height": record["height"], "width": record["width"]})
        for part in record["parts"]:
            x, y, w, h = part["bbox"]
            ann = {"id": len(coco["annotations"]) + 1, "image_id": image_id,
                   "category_id": category_ids[part["part_name"]], "bbox": [x, y, w, h],
                   "area": w * h, "iscrowd": 0, "state": part["state"],
                   "state_name": part["state_name"]}
            if part["trust"] is not None:
                ann["trust"] = part["trust"]
            coco["annotations"].append(ann)

    stats = _statistics(coco, dataset)
    problems_path = problems_report_path(save_path)
    folder = os.path.dirname(os.path.abspath(save_path))
    try:
        os.makedirs(folder, exist_ok=True)
        if on_invalid == "skip":
            # Both or neither: a report beside an older COCO file would describe another output.
            atomic_write_texts({problems_path: _problems_report(json_path, dataset),
                                save_path: json.dumps(coco)})
            stats["problems_path"] = problems_path
        else:
            atomic_write_json(coco, save_path)
        if on_invalid != "skip" and os.path.exists(problems_path):
            # A report left by an earlier skip run describes another output: remove it.
            os.unlink(problems_path)
    except OSError as e:
        raise ConfigError(f"{save_path}: cannot write the output: {e.strerror or e}")
    stats["save_path"] = save_path
    if verbose:
        print(format_statistics(stats))
        if dataset.problems:
            print(f"{len(dataset.problems)} problems; invalid boxes/images skipped, "
                  f"see {problems_path}")
        if dataset.exif_transposed:
            print(f"note: {dataset.exif_transposed} images carry an EXIF orientation that turns "
                  "them by 90 degrees; their size and boxes are written for the upright view "
                  "that training and inference read")
    return stats


def load_coco_states(path):
    """Read a COCO-with-states file and check its state fields.

    Returns:
        dict: the COCO dict.

    Raises:
        DataError: unreadable JSON or an annotation without a valid ``state``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: COCO file not found")
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: unparsable JSON at line {e.lineno}, column {e.colno}: {e.msg}")
    if not isinstance(coco, dict) or not all(k in coco for k in ("images", "annotations",
                                                                   "categories")):
        raise DataError(f"{path}: not a COCO detection file (needs images, annotations, "
                        "categories)")
    bad = [a.get("id") for a in coco["annotations"]
           if not isinstance(a.get("state"), int) or not 0 <= a["state"] < len(STATE_NAMES)]
    if bad:
        raise DataError(f"{path}: {len(bad)} annotations without a valid 'state' "
                        f"(ids {bad[:10]}{'...' if len(bad) > 10 else ''})")
    return coco


def format_statistics(stats):
    """The conversion statistics as text tables (totals; boxes per part; boxes per state)."""
    totals = [["images", stats["images"]], ["boxes", stats["annotations"]],
              ["clipped boxes", stats["clipped"]], ["dropped boxes", stats["dropped_boxes"]],
              ["dropped images", stats["dropped_images"]], ["problems", stats["problems"]]]
    n = max(stats["annotations"], 1)
    per_part = [[name, c, f"{100.0 * c / n:.1f}"] for name, c in stats["boxes_per_part"].items()]
    per_state = [[name, c, f"{100.0 * c / n:.1f}"] for name, c in stats["boxes_per_state"].items()]
    return "\n\n".join([
        tabulate(totals, headers=["COCO conversion", "count"], tablefmt="github"),
        tabulate(per_part, headers=["part", "boxes", "%"], tablefmt="github"),
        tabulate(per_state, headers=["state", "boxes", "%"], tablefmt="github"),
    ])


def _statistics(coco, dataset):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_part = Counter(names[a["category_id"]] for a in coco["annotations"])
    per_state = Counter(a["state"] for a in coco["annotations"])
    return {
        "images": len(coco["images"]),
        "annotations": len(coco["annotations"]),
        "boxes_per_part": {c["name"]: per_part.get(c["name"], 0) for c in coco["categories"]},
        "boxes_per_state": {n: per_state.get(i, 0) for i, n in enumerate(STATE_NAMES)},
        "clipped": dataset.clipped,
        "dropped_boxes": dataset.dropped_boxes,
        "dropped_images": dataset.dropped_images,
        "problems": len(dataset.problems),
        "exif_transposed": dataset.exif_transposed,
        "problems_path": None,
    }


def _problems_report(json_path, dataset):
    lines = [f"# Problems in {json_path}: {len(dataset.problems)}",
             f"# dropped images: {dataset.dropped_images}, dropped boxes: "
             f"{dataset.dropped_boxes}, clipped boxes: {dataset.clipped}"]
    lines += [str(p) for p in dataset.problems]
    return "\n".join(lines) + "\n"


def _same_file(a, b):
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)
