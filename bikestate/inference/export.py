"""predictions.json: every detection of a run, and its conversion into COCO results.

A detection record (one per box, JSON-friendly)::

    {"file_name": "photos/bike1.jpg", "part": "saddle", "category_id": 21,
     "bbox": [x, y, w, h], "score": 0.93, "state": "damaged", "state_id": 1,
     "state_scores": {"intact": 0.05, "damaged": 0.87, "absent": 0.03, "occluded": 0.05}}

``bbox`` is in the pixels of the upright original image; ``category_id`` is the contiguous class
id + 1 (the COCO id of DelftBikes parts, docs/data_formats.md). :func:`predictions_to_coco_results`
turns such records into the COCO results list that pycocotools' ``loadRes`` and
:class:`bikestate.evaluation.BikeStateEvaluator` read, against the images and categories of a
COCO ground-truth file.
"""
import json
import os

from ..constants import STATE_NAMES
from ..utils.errors import DataError
from .detections import as_detections


def instances_to_records(file_name, instances, part_names):
    """Detection records (see module docstring) of one image's predictions.

    Args:
        file_name (str): the image.
        instances (Instances or Detections): predictions in original pixels: boxes, scores,
            classes, states and (N, 4) state probabilities (see :mod:`.detections`).
        part_names (Sequence[str]): class names by contiguous id.
    """
    detections = as_detections(instances)
    boxes = detections.boxes.tolist()
    scores = detections.scores.tolist()
    classes = detections.classes.tolist()
    states = detections.states.tolist()
    probs = detections.state_scores.tolist()
    records = []
    for box, score, cls, state, p in zip(boxes, scores, classes, states, probs):
        x0, y0, x1, y1 = box
        records.append({
            "file_name": file_name,
            "part": part_names[cls],
            "category_id": cls + 1,
            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            "score": round(score, 5),
            "state": STATE_NAMES[state],
            "state_id": state,
            "state_scores": {s: round(v, 5) for s, v in zip(STATE_NAMES, p)},
        })
    return records


def _load_json(obj, what):
    if isinstance(obj, (str, os.PathLike)):
        try:
            with open(obj, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{obj}: cannot read {what} ({' '.join(str(e).split())})") from e
    return obj


def _norm(path):
    return os.path.normpath(path).replace(os.sep, "/")


class _ImageIndex:
    """Finds a COCO image for a file name: exact path, then longest common path suffix."""

    def __init__(self, images):
        self.by_path = {_norm(im["file_name"]): im["id"] for im in images}
        self._cache = {}

    def lookup(self, file_name):
        # Every detection of an image asks for the same name: answer it once.
        if file_name not in self._cache:
            self._cache[file_name] = self._lookup(file_name)
        return self._cache[file_name]

    def _lookup(self, file_name):
        name = _norm(file_name)
        if name in self.by_path:
            return self.by_path[name]
        parts = name.split("/")
        # Try ever shorter suffixes: "run/photos/a.jpg" finds "photos/a.jpg", then "a.jpg".
        for start in range(1, len(parts)):
            suffix = "/".join(parts[start:])
            hits = [i for p, i in self.by_path.items() if p == suffix or p.endswith("/" + suffix)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1 and start == len(parts) - 1:
                raise DataError(f"{file_name}: {len(hits)} images of the ground truth share "
                                f"its name; give the images with their folders")
        return None


def predictions_to_coco_results(predictions, dataset_json):
    """Convert predictions.json into COCO detection results with states.

    Args:
        predictions: the content of predictions.json (dict with ``detections``), a list of
            detection records, or the path of predictions.json.
        dataset_json: a COCO-with-states ground truth (dict or path) for the same images.
            Images are matched by file name (the longest path suffix both share) and parts by
            category *name*, so ids need not agree.

    Returns:
        list[dict]: one per detection of a matched image: ``image_id``, ``category_id``,
        ``bbox`` [x, y, w, h], ``score``, ``state`` (int), ``state_name``, ``state_scores``
        (4 floats in STATE_NAMES order): the format of BikeStateEvaluator's result file.

    Raises:
        DataError: a detection's image or part is not in the ground truth.
    """
    predictions = _load_json(predictions, "predictions")
    dataset = _load_json(dataset_json, "COCO ground truth")
    detections = predictions["detections"] if isinstance(predictions, dict) else predictions
    index = _ImageIndex(dataset.get("images", []))
    category_ids = {c["name"]: c["id"] for c in dataset.get("categories", [])}

    results, unknown_images = [], set()
    for det in detections:
        image_id = index.lookup(det["file_name"])
        if image_id is None:
            unknown_images.add(det["file_name"])
            continue
        if det["part"] not in category_ids:
            raise DataError(f"{det['file_name']}: part {det['part']!r} is not a category of "
                            f"the ground truth")
        state_scores = det["state_scores"]
        if isinstance(state_scores, dict):
            state_scores = [state_scores[s] for s in STATE_NAMES]
        state = det.get("state_id", det["state"])
        if isinstance(state, str):
            state = STATE_NAMES.index(state)
        results.append({
            "image_id": image_id,
            "category_id": category_ids[det["part"]],
            "bbox": list(det["bbox"]),
            "score": det["score"],
            "state": int(state),
            "state_name": STATE_NAMES[int(state)],
            "state_scores": list(state_scores),
        })
    if unknown_images:
        names = sorted(unknown_images)
        raise DataError(f"{len(names)} predicted image(s) are not in the ground truth, "
                        f"e.g. {names[0]}", details=names[:20])
    return results
