"""The bike inspection report: what is wrong with this bike, part by part.

For every image and every part the model knows (22 for DelftBikes) the report gives one
verdict: ``intact``, ``damaged``, ``absent``, ``occluded`` or ``not_found``.

Rule: among the detections of a part whose score is at least ``score_thresh``, the one with the
highest detection score speaks for the part. Its verdict is its most probable state, and

    confidence = detection score x probability of that state

i.e. the model's estimate that the part is at that place *and* in that state. A damaged saddle
found with score 0.9 and P(damaged) 0.6 gets 0.54: lower than either number alone, because both
have to be right for a repair shop to act on it. A part without such a detection is
``not_found`` with confidence 0 and no box (the model did not even find the place where it
should be, which for a bike usually means the photo does not show it).

Per image, ``attention`` lists the parts whose verdict is ``damaged`` or ``absent``, most
confident first: the answer to "what needs fixing".
"""
import csv
import io
import os

from ..constants import NOT_FOUND, STATE_NAMES
from ..utils.io import atomic_write_json, atomic_write_text

# Verdicts that need a repair shop's attention, in the order they are explained to users.
ATTENTION_VERDICTS = ("damaged", "absent")
VERDICTS = tuple(STATE_NAMES) + (NOT_FOUND,)

CONFIDENCE_DEFINITION = "detection score x probability of the verdict state"

CSV_COLUMNS = (
    ["file_name", "part", "verdict", "confidence", "score", "state_probability",
     "box_x", "box_y", "box_w", "box_h"]
    + [f"p_{name}" for name in STATE_NAMES]
)


def _xyxy_to_xywh(box):
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def build_report(file_name, instances, part_names, score_thresh):
    """The inspection report of one image.

    Args:
        file_name (str): the image, as shown to the user.
        instances (Instances): predictions for the image in original pixels, with
            ``pred_boxes`` (N boxes XYXY), ``scores`` (N,), ``pred_classes`` (N,) int,
            ``state_scores`` (N, 4) float; ``pred_states`` is not needed (it is the argmax).
        part_names (Sequence[str]): names of the classes, by contiguous class id.
        score_thresh (float): detections scoring below this are ignored.

    Returns:
        dict with keys ``file_name``, ``height``, ``width``, ``parts`` (one dict per part, in
        ``part_names`` order: ``part``, ``verdict``, ``confidence``, ``score``,
        ``state_probability``, ``box`` [x, y, w, h] or None, ``state_scores``
        {state name: probability} or None), ``counts`` {verdict: number of parts} and
        ``attention`` (parts damaged or absent: ``part``, ``verdict``, ``confidence``, ``box``,
        by decreasing confidence).
    """
    height, width = (int(v) for v in instances.image_size)
    boxes = instances.pred_boxes.tensor.detach().cpu().tolist()
    scores = instances.scores.detach().cpu().tolist()
    classes = instances.pred_classes.detach().cpu().tolist()
    state_scores = instances.state_scores.detach().cpu().tolist()

    # Best detection per class: the highest score at or above the threshold.
    best = {}
    for i, (cls, score) in enumerate(zip(classes, scores)):
        if score >= score_thresh and (cls not in best or score > scores[best[cls]]):
            best[cls] = i

    parts = []
    for cls, name in enumerate(part_names):
        if cls not in best:
            parts.append({"part": name, "verdict": NOT_FOUND, "confidence": 0.0, "score": 0.0,
                          "state_probability": 0.0, "box": None, "state_scores": None})
            continue
        i = best[cls]
        probs = state_scores[i]
        state = max(range(len(probs)), key=probs.__getitem__)
        parts.append({
            "part": name,
            "verdict": STATE_NAMES[state],
            "confidence": round(scores[i] * probs[state], 4),
            "score": round(scores[i], 4),
            "state_probability": round(probs[state], 4),
            "box": _xyxy_to_xywh(boxes[i]),
            "state_scores": {s: round(p, 4) for s, p in zip(STATE_NAMES, probs)},
        })

    attention = sorted(
        (p for p in parts if p["verdict"] in ATTENTION_VERDICTS),
        key=lambda p: (-p["confidence"], ATTENTION_VERDICTS.index(p["verdict"]), p["part"]),
    )
    return {
        "file_name": file_name,
        "height": height,
        "width": width,
        "parts": parts,
        "counts": {v: sum(p["verdict"] == v for p in parts) for v in VERDICTS},
        "attention": [{k: p[k] for k in ("part", "verdict", "confidence", "box")}
                      for p in attention],
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


def write_reports(reports, out_dir, errors=(), score_thresh=None, extra=None):
    """Write ``out_dir/report.json`` and ``out_dir/report.csv``, each atomically.

    Args:
        reports (list[dict]): outputs of :func:`build_report`.
        out_dir (str): existing folder.
        errors (list[dict]): images that could not be read (``file_name``, ``error``); they
            appear in report.json (not in the CSV, whose rows are image x part).
        score_thresh (float or None): recorded in report.json.
        extra (dict or None): further top-level entries of report.json (config, weights).

    Returns:
        (str, str): paths of report.json and report.csv.
    """
    json_path = os.path.join(out_dir, "report.json")
    csv_path = os.path.join(out_dir, "report.csv")
    document = dict(extra or {})
    document.update({
        "score_threshold": score_thresh,
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
    atomic_write_json(document, json_path, indent=1)
    atomic_write_text(buffer.getvalue(), csv_path)
    return json_path, csv_path
