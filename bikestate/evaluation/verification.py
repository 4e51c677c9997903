"""Verification metrics: the report's verdicts scored against the ground truth, per image and part.

The unit is one (image, part) pair: the verdict of :func:`bikestate.verdict.part_verdicts` for
that part (what the report shows the user) against that part's ground truth in that image.
Parts without an annotation in an image are not scored there. DelftBikes annotates every part
once per image; where a part has several (non-crowd) boxes in one image, its ground-truth state
is the most urgent of them (damaged, then intact, then occluded, then absent: "is any of them
damaged / present?") and the verdict box is compared with the nearest of them.

Figures come in pairs, never a rate alone (a detector that finds nothing never hallucinates):

* threshold-free: ``auroc_present`` (present vs absent ranked by P(present), 0.5 for a model
  that finds nothing), ``halluc_at_95r`` / ``halluc_at_90r`` (share of absent parts reported
  present at the P(present) threshold keeping 95 % / 90 % of present parts, as FPR@95TPR),
  ``damage_ap`` (average precision of P(damaged) over all pairs, damaged ground truth
  positive: every damaged claim counts, also over absent parts; a pair with P(damaged) 0, e.g.
  a part without any detection, is never claimed, so a damaged part among them is a miss and a
  model that finds nothing scores 0, as COCO counts a ground truth without a detection);
* at the operating point: ``present_recall``, ``hallucination_rate`` and ``not_found_rate``
  side by side; ``damage_precision``, ``damage_recall``, ``damage_f1``; verdict F1 per state and
  ``macro_f1`` (a ``not_found`` verdict is right for no state) with ``macro_f1_majority``, the
  macro-F1 of always answering the most frequent ground-truth state, beside it.

Rates and F1 are fractions in [0, 1], NaN where the denominator is empty (module
:mod:`.conventions`).
"""
import numpy as np

from ..constants import STATE_NAMES
from ..verdict import NOT_FOUND_ID, part_verdicts
from .conventions import nan_div
from .matching import pairwise_iou

__all__ = [
    "GT_STATE_PRIORITY",
    "LOCALIZED_IOU",
    "roc_auc",
    "roc_curve",
    "precision_recall_curve",
    "average_precision",
    "retrieval_precision_recall_curve",
    "retrieval_average_precision",
    "rate_at_recall",
    "verdict_pairs",
    "localized",
    "verification_metrics",
    "verdict_confusion",
    "per_part_verification",
]

# Ground-truth state of a part with several boxes in one image: the first of these it has.
GT_STATE_PRIORITY = ("damaged", "intact", "occluded", "absent")
# IoU with the ground-truth box at which a verdict counts as localized (verify_loc/*).
LOCALIZED_IOU = 0.5


# ------------------------------------------------------------------------------ curves


def roc_curve(scores, positive):
    """ROC points at every distinct score, highest first, starting at (0, 0).

    Args:
        scores (ndarray): (N,) higher means more likely positive.
        positive (ndarray): (N,) bool.
    Returns:
        (fpr, tpr, thresholds): each (K + 1,); point k counts ``scores >= thresholds[k]``
        (thresholds[0] is +inf).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1] if scores.size else []
    tp = np.cumsum(positive)[last_of_tie]
    fp = np.cumsum(~positive)[last_of_tie]
    n_pos, n_neg = positive.sum(), (~positive).sum()
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(len(tp) + 1, np.nan)
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(len(fp) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def roc_auc(scores, positive):
    """Area under the ROC curve (ties count half); NaN without positives or negatives."""
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    if positive.all() or not positive.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(scores, positive)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(scores, positive):
    """Precision and recall at every distinct score, highest first.

    Returns:
        (precision, recall, thresholds): each (K,); point k counts ``scores >= thresholds[k]``.
    """
    fpr, tpr, thresholds = roc_curve(scores, positive)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    tp = tpr[1:] * positive.sum()
    fp = fpr[1:] * (~positive).sum() if (~positive).any() else np.zeros_like(tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    return precision, tpr[1:], thresholds[1:]


def average_precision(scores, positive):
    """AP = sum over distinct thresholds of (R_k - R_{k-1}) P_k (scikit-learn's definition,
    no interpolation); NaN without positives."""
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    if not positive.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(scores, positive)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def retrieval_precision_recall_curve(scores, positive):
    """:func:`precision_recall_curve` of a ranking in which items scoring 0 were never
    retrieved: only the items scoring above 0 are ranked, and recall is over all positives,
    so positives scoring 0 are misses (the curve stops below recall 1). Empty arrays when no
    item scores above 0."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    retrieved = scores > 0
    if not retrieved.any():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    precision, recall, thresholds = precision_recall_curve(scores[retrieved],
                                                           positive[retrieved])
    if not positive[retrieved].any():  # nothing recalled (recall is NaN over no positive)
        return precision, np.zeros_like(precision), thresholds
    return precision, recall * (positive[retrieved].sum() / positive.sum()), thresholds


def retrieval_average_precision(scores, positive):
    """:func:`average_precision` of a ranking in which items scoring 0 were never retrieved
    (:func:`retrieval_precision_recall_curve`): positives scoring 0 add nothing, where a tie
    of zeros at the bottom of the ranking would earn them the chance-level precision. 0 when
    no positive scores above 0, NaN without positives; equal to :func:`average_precision`
    when every item scores above 0."""
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    if not positive.any():
        return float("nan")
    precision, recall, _ = retrieval_precision_recall_curve(scores, positive)
    if not len(recall) or not recall[-1] > 0:
        return 0.0
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def rate_at_recall(scores, positive, recall):
    """The false-positive rate at the highest threshold whose true-positive rate >= ``recall``.

    Returns:
        (float, float): the rate (NaN without positives or negatives) and the threshold.
    """
    fpr, tpr, thresholds = roc_curve(scores, positive)
    reached = np.flatnonzero(tpr >= recall - 1e-12)
    if not reached.size or np.isnan(fpr).any():
        return float("nan"), float("nan")
    return float(fpr[reached[0]]), float(thresholds[reached[0]])


# ------------------------------------------------------------------------------ pairs


def verdict_pairs(predictions, ground_truths, num_parts, operating_point,
                  state_names=STATE_NAMES):
    """The (image, part) pairs of a dataset: the report's verdict and the ground truth.

    Args:
        predictions (dict[int, dict]): per image id, ``boxes`` (N, 4) XYXY, ``scores`` (N,),
            ``classes`` (N,), ``state_scores`` (N, S); a missing image has no detection.
        ground_truths (dict[int, dict]): per image id, ``boxes`` (M, 4) XYXY, ``classes``
            (M,), ``states`` (M,), optional ``iscrowd`` (M,) (ignored boxes).
        num_parts (int): number of parts.
        operating_point (OperatingPoint): the verdict rule's thresholds.
    Returns:
        dict of arrays, one row per scored pair (images in id order, parts in index order):
        ``image_id``, ``part``, ``gt_state``, ``verdict`` (state or NOT_FOUND_ID), ``score``,
        ``p_present``, ``vote`` (the part's detections' score-weighted mean of
        ``1 - P(absent)``), ``state_probs`` (n, S) (the speaking detection's state probabilities),
        ``confidence``, ``detection`` (index in the image's predictions, -1 if none),
        ``box`` (n, 4) XYXY of the speaking detection (NaN if none) and ``iou`` (its IoU with
        the nearest ground-truth box of the part; 0 if none).
    """
    rank = {state_names.index(s): k for k, s in enumerate(GT_STATE_PRIORITY)}
    num_states = len(state_names)
    columns = {k: [] for k in ("image_id", "part", "gt_state", "verdict", "score", "p_present",
                               "vote", "state_probs", "confidence", "detection", "box", "iou")}
    for image_id in sorted(ground_truths):
        gt = ground_truths[image_id]
        gt_classes = np.asarray(gt["classes"], dtype=np.int64).reshape(-1)
        keep = ~np.asarray(gt.get("iscrowd", np.zeros(gt_classes.size, bool)), dtype=bool)
        gt_classes = gt_classes[keep]
        if gt_classes.size == 0:
            continue
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)[keep]
        gt_states = np.asarray(gt["states"], dtype=np.int64).reshape(-1)[keep]
        pred = predictions.get(image_id)
        if pred is None or len(pred["scores"]) == 0:
            pred = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0),
                    "classes": np.zeros(0, np.int64), "state_scores": np.zeros((0, num_states))}
        verdicts = part_verdicts(pred["scores"], pred["classes"], pred["state_scores"],
                                 num_parts, operating_point, state_names.index("absent"))
        parts = np.unique(gt_classes)
        parts = parts[(parts >= 0) & (parts < num_parts)]
        det = verdicts["detection"][parts]
        pred_boxes = np.asarray(pred["boxes"], dtype=np.float64).reshape(-1, 4)
        boxes = np.full((parts.size, 4), np.nan)
        boxes[det >= 0] = pred_boxes[det[det >= 0]]
        iou = np.zeros(parts.size)
        states = np.empty(parts.size, np.int64)
        for k, part in enumerate(parts):
            own = gt_classes == part
            states[k] = min(gt_states[own].tolist(), key=lambda s: rank.get(s, len(rank)))
            if det[k] >= 0:
                iou[k] = pairwise_iou(boxes[k:k + 1], gt_boxes[own]).max()
        columns["image_id"].append(np.full(parts.size, image_id, np.int64))
        columns["part"].append(parts)
        columns["gt_state"].append(states)
        columns["detection"].append(det)
        columns["box"].append(boxes)
        columns["iou"].append(iou)
        for key in ("verdict", "score", "p_present", "vote", "state_probs", "confidence"):
            columns[key].append(verdicts[key][parts])
    empty = {"state_probs": np.zeros((0, num_states)), "box": np.zeros((0, 4))}
    return {k: (np.concatenate(v) if v else empty.get(k, np.zeros(0)))
            for k, v in columns.items()}


def localized(pairs, state_names=STATE_NAMES, iou_thresh=LOCALIZED_IOU):
    """The pairs as scored when a verdict must also point at the part (``verify_loc/*``).

    On a present part, a verdict whose box overlaps the part's ground truth below
    ``iou_thresh`` counts as not found (and its P(present), P(state) as 0): the user was shown
    a box elsewhere. Verdicts on absent parts stay as they are: a claim that a missing part is
    present is a hallucination wherever its box is.
    """
    absent = state_names.index("absent")
    off = (pairs["gt_state"] != absent) & (pairs["verdict"] != NOT_FOUND_ID) & (
        pairs["iou"] < iou_thresh)
    result = dict(pairs)
    result["verdict"] = np.where(off, NOT_FOUND_ID, pairs["verdict"])
    for key in ("score", "p_present", "vote", "confidence"):
        if key in pairs:
            result[key] = np.where(off, 0.0, pairs[key])
    result["state_probs"] = np.where(off[:, None], 0.0, pairs["state_probs"])
    return result


# ------------------------------------------------------------------------------ metrics


def verdict_confusion(gt_states, verdicts, num_states):
    """(S, S + 1) counts: rows ground-truth states, columns verdicts (states, then not found)."""
    gt_states = np.asarray(gt_states, dtype=np.int64)
    columns = np.where(np.asarray(verdicts) == NOT_FOUND_ID, num_states, verdicts)
    counts = np.bincount(gt_states * (num_states + 1) + columns,
                         minlength=num_states * (num_states + 1))
    return counts.reshape(num_states, num_states + 1)


def verification_metrics(pairs, state_names=STATE_NAMES):
    """Every verification figure of a set of pairs (module docstring).

    Args:
        pairs (dict): :func:`verdict_pairs`'s output (or a selection of its rows).
    Returns:
        (dict[str, float], ndarray): the figures and the (S, S + 1) verdict confusion matrix.
    """
    absent = state_names.index("absent")
    damaged = state_names.index("damaged")
    num_states = len(state_names)
    gt = np.asarray(pairs["gt_state"], dtype=np.int64)
    verdict = np.asarray(pairs["verdict"], dtype=np.int64)
    is_present = gt != absent
    said_present = (verdict != NOT_FOUND_ID) & (verdict != absent)
    p_damaged = pairs["score"] * pairs["state_probs"][:, damaged] if gt.size else np.zeros(0)
    results = {
        "auroc_present": roc_auc(pairs["p_present"], is_present),
        "halluc_at_95r": rate_at_recall(pairs["p_present"], is_present, 0.95)[0],
        "halluc_at_90r": rate_at_recall(pairs["p_present"], is_present, 0.90)[0],
        "present_recall": nan_div((is_present & said_present).sum(), is_present.sum()),
        "hallucination_rate": nan_div((~is_present & said_present).sum(), (~is_present).sum()),
        "not_found_rate": nan_div((is_present & (verdict == NOT_FOUND_ID)).sum(),
                                   is_present.sum()),
        "damage_ap": retrieval_average_precision(p_damaged, gt == damaged),
    }
    cm = verdict_confusion(gt, verdict, num_states)
    tp, n_gt, n_said = np.diag(cm[:, :num_states]), cm.sum(axis=1), cm[:, :num_states].sum(0)
    f1s = []
    for s, name in enumerate(state_names):
        results[f"precision-{name}"] = nan_div(tp[s], n_said[s])
        results[f"recall-{name}"] = nan_div(tp[s], n_gt[s])
        results[f"f1-{name}"] = nan_div(2 * tp[s], n_said[s] + n_gt[s])
        if n_said[s] + n_gt[s]:
            f1s.append(results[f"f1-{name}"])
    results["damage_precision"] = results["precision-damaged"]
    results["damage_recall"] = results["recall-damaged"]
    results["damage_f1"] = results["f1-damaged"]
    results["macro_f1"] = float(np.mean(f1s)) if f1s else float("nan")
    # Always answering the most frequent state: F1 2n/(N + n) for it, 0 for the others.
    in_gt = np.flatnonzero(n_gt)
    results["macro_f1_majority"] = (float(2 * n_gt.max() / (gt.size + n_gt.max()) / in_gt.size)
                                    if in_gt.size else float("nan"))
    results["num_parts"] = float(gt.size)
    return results, cm


def per_part_verification(pairs, part_names, state_names=STATE_NAMES):
    """Per part: the verification figures that stay meaningful on one part's pairs.

    Returns:
        list[dict]: ``part``, ``n_pairs``, ``n_absent``, ``n_damaged`` and ``auroc_present``,
        ``halluc_at_95r``, ``present_recall``, ``hallucination_rate``, ``not_found_rate``,
        ``damage_ap``, ``damage_recall``, ``damage_precision``, ``macro_f1`` (NaN where the part
        has no such case).
    """
    absent = state_names.index("absent")
    damaged = state_names.index("damaged")
    keys = ("auroc_present", "halluc_at_95r", "present_recall", "hallucination_rate",
            "not_found_rate", "damage_ap", "damage_recall", "damage_precision", "macro_f1")
    rows = []
    for p, name in enumerate(part_names):
        sel = pairs["part"] == p
        subset = {k: v[sel] for k, v in pairs.items()}
        figures, _ = verification_metrics(subset, state_names)
        row = {"part": name, "n_pairs": int(sel.sum()),
               "n_absent": int((subset["gt_state"] == absent).sum()),
               "n_damaged": int((subset["gt_state"] == damaged).sum())}
        row.update({k: figures[k] for k in keys})
        rows.append(row)
    return rows
