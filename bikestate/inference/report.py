"""The bike inspection report: what is wrong with this bike, part by part.

For every image and every part the model knows (22 for DelftBikes) the report gives one
verdict: ``intact``, ``damaged``, ``absent``, ``occluded`` or ``not_found``, by the verdict rule
of :mod:`bikestate.verdict` (the one the evaluator scores): the part's highest-scoring detection
speaks for it; below the operating point's score threshold the part is ``not_found``; otherwise
the verdict is its state, decided by the operating point (plain argmax by default, or the
presence threshold and state biases calibrated on validation data, ``thresholds.json``).

    confidence = detection score x probability of the verdict state

i.e. the model's estimate that the part is at that place *and* in that state. A damaged saddle
found with score 0.9 and P(damaged) 0.6 gets 0.54: lower than either number alone, because both
have to be right for a repair shop to act on it. A ``not_found`` part has confidence 0 and no
box: the model did not even find the place where it should be, so it is missing or not in the
photo.

Per image, ``attention`` lists what needs a look: damaged and absent parts, most confident
first, then the parts not found ("missing or not in the photo"), in part order.
"""
import csv
import io
import json
import os

from ..constants import NOT_FOUND, STATE_NAMES
from ..utils.boxes import xyxy_to_xywh
from ..utils.io import atomic_write_texts
from ..verdict import as_operating_point, part_verdicts, verdict_name
from .detections import as_detections

# Verdicts that need a repair shop's attention, in the order they are listed.
ATTENTION_VERDICTS = ("damaged", "absent", NOT_FOUND)
# What each attention entry means, for the people who read the report.
ATTENTION_REASONS = {"damaged": "damaged", "absent": "missing",
                     NOT_FOUND: "not found: missing or not in the photo"}
VERDICTS = tuple(STATE_NAMES) + (NOT_FOUND,)

CONFIDENCE_DEFINITION = "detection score x probability of the verdict state"

CSV_COLUMNS = (
    ["file_name", "part", "verdict", "confidence", "score", "state_probability",
     "box_x", "box_y", "box_w", "box_h"]
    + [f"p_{name}" for name in STATE_NAMES]
)


def build_report(file_name, instances, part_names, operating_point):
    """The inspection report of one image.

    Args:
        file_name (str): the image, as shown to the user.
        instances (Instances or Detections): predictions for the image in original pixels:
            N boxes XYXY, scores (N,), classes (N,) and state probabilities (N, S) (see
            :mod:`.detections`).
        part_names (Sequence[str]): names of the classes, by contiguous class id.
        operating_point (OperatingPoint or float): thresholds of the verdict rule; a float is
            the score threshold of the default rule.

    Returns:
        dict with keys ``file_name``, ``height``, ``width``, ``parts`` (one dict per part, in
        ``part_names`` order: ``part``, ``verdict``, ``confidence``, ``score``,
        ``state_probability``, ``box`` [x, y, w, h] or None, ``state_scores``
        {state name: probability} or None), ``counts`` {verdict: number of parts} and
        ``attention`` (``part``, ``verdict``, ``reason``, ``confidence``, ``box``: damaged and
        absent parts by decreasing confidence, then the parts not found).
    """
    operating_point = as_operating_point(operating_point)
    detections = as_detections(instances)
    height, width = detections.image_size
    boxes = xyxy_to_xywh(detections.boxes)
    verdicts = part_verdicts(detections.scores, detections.classes, detections.state_scores,
                             len(part_names), operating_point)

    parts = []
    for cls, name in enumerate(part_names):
        verdict = int(verdicts["verdict"][cls])
        if verdict < 0:
            parts.append({"part": name, "verdict": NOT_FOUND, "confidence": 0.0, "score": 0.0,
                          "state_probability": 0.0, "box": None, "state_scores": None})
            continue
        probs = verdicts["state_probs"][cls]
        parts.append({
            "part": name,
            "verdict": verdict_name(verdict),
            "confidence": round(float(verdicts["confidence"][cls]), 4),
            "score": round(float(verdicts["score"][cls]), 4),
            "state_probability": round(float(probs[verdict]), 4),
            "box": [round(float(v), 2) for v in boxes[verdicts["detection"][cls]]],
            "state_scores": {s: round(float(p), 4) for s, p in zip(STATE_NAMES, probs)},
        })

    rank = {v: i for i, v in enumerate(ATTENTION_VERDICTS)}
    attention = sorted(
        (p for p in parts if p["verdict"] in rank),
        key=lambda p: (p["verdict"] == NOT_FOUND, -p["confidence"], rank[p["verdict"]],
                       part_names.index(p["part"])),
    )
    return {
        "file_name": file_name,
        "height": height,
        "width": width,
        "parts": parts,
        "counts": {v: sum(p["verdict"] == v for p in parts) for v in VERDICTS},
        "attention": [{"part": p["part"], "verdict": p["verdict"],
                       "reason": ATTENTION_REASONS[p["verdict"]],
                       "confidence": p["confidence"], "box": p["box"]} for p in attention],
    }


def report_rows(reports):
    """Flatten reports into CSV rows (dicts keyed by :data:`CSV_COLUMNS`), one per image/part."""
    rows = []
    for report in reports:
        for part in report["parts"]:
            box = part["box"] or [""] * 4
            probs = part["state_scores"] or {}
            row = {
                "file_name": report["file_name"],
                "part": part["part"],
                "verdict": part["verdict"],
                "confidence": part["confidence"],
                "score": part["score"],
                "state_probability": part["state_probability"],
                "box_x": box[0], "box_y": box[1], "box_w": box[2], "box_h": box[3],
            }
            row.update({f"p_{s}": probs.get(s, "") for s in STATE_NAMES})
            rows.append(row)
    return rows


def report_files(reports, out_dir, errors=(), operating_point=None, extra=None):
    """The contents of ``out_dir/report.json`` and ``out_dir/report.csv`` (arguments as
    :func:`write_reports`): ``{path: text}``, for writing together with other files."""
    document = dict(extra or {})
    document.update({
        "score_threshold": operating_point.score_thresh if operating_point else None,
        "verdict_rule": operating_point.describe() if operating_point else None,
        "confidence_definition": CONFIDENCE_DEFINITION,
        "num_images": len(reports),
        "images_needing_attention": sum(bool(r["attention"]) for r in reports),
        "images": list(reports),
        "errors": list(errors),
    })
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(reports))
    return {os.path.join(out_dir, "report.json"): json.dumps(document, indent=1),
            os.path.join(out_dir, "report.csv"): buffer.getvalue()}


def write_reports(reports, out_dir, errors=(), operating_point=None, extra=None):
    """Write ``out_dir/report.json`` and ``out_dir/report.csv`` atomically, together.

    Args:
        reports (list[dict]): outputs of :func:`build_report`.
        out_dir (str): existing folder.
        errors (list[dict]): images that could not be read (``file_name``, ``error``); they
            appear in report.json (not in the CSV, whose rows are image x part).
        operating_point (OperatingPoint or None): the verdict rule used; its values are
            recorded in report.json (``verdict_rule``, ``score_threshold``).
        extra (dict or None): further top-level entries of report.json (config, weights).

    Returns:
        (str, str): paths of report.json and report.csv.
    """
    files = report_files(reports, out_dir, errors, operating_point, extra)
    atomic_write_texts(files)
    json_path, csv_path = files
    return json_path, csv_path
