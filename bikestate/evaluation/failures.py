"""Failure analysis: the (image, part) verdicts that went wrong, sorted into kinds, worst first.

Works on :func:`bikestate.evaluation.verification.verdict_pairs`'s output: one row per image
and part with the ground-truth state, the verdict of :mod:`bikestate.verdict` (what the
report shows, what the evaluator scores), the speaking detection's score, state probabilities
and IoU with the part's ground truth. Every wrong verdict falls in exactly one kind (the first
that applies, in this order); a part that is absent and not found is no failure:

=================  ===================================================  ======================
kind               ground truth -> verdict                               ranked by
=================  ===================================================  ======================
hallucination      absent -> intact or damaged                           P(present)
not_found          intact, damaged or occluded -> not_found              best score seen
mislocalized       intact, damaged or occluded -> intact, damaged or     confidence
                   occluded with the box at IoU < 0.5 (any state)
missed_damage      damaged -> intact or occluded                         confidence
false_alarm        intact -> damaged                                     confidence
occluded_absent    occluded -> absent, or absent -> occluded             confidence
called_absent      intact or damaged -> absent                           confidence
other_state        intact -> occluded, occluded -> intact or damaged     confidence
=================  ===================================================  ======================

``P(present)`` (by the operating point's presence rule) and ``confidence = score x
p[verdict]`` are the verdict rule's numbers; "best score seen" is the score of the part's
highest-scoring detection, below the operating point's score threshold (0 when the model has
none). A box that points
elsewhere (``mislocalized``) comes before the state kinds: its state was judged on something
else. The evaluator's ``verify/hallucination_rate`` counts ``hallucination`` and the absent ->
occluded half of ``occluded_absent`` (an occluded verdict claims the part is there). Ties are
broken by image id, then part index, so the order is reproducible.
"""
from collections import namedtuple

import numpy as np

from ..constants import STATE_NAMES
from ..verdict import NOT_FOUND_ID, verdict_name
from .verification import LOCALIZED_IOU

__all__ = [
    "FailureKind",
    "FAILURE_KINDS",
    "KIND_NAMES",
    "classify_failures",
    "ranking_values",
    "rank_failures",
    "failure_counts",
    "eligible_counts",
    "top_parts",
    "analyze_failures",
]

FailureKind = namedtuple("FailureKind", "name title definition ranked_by")

# In classification priority order, which is also the order the page shows them in.
FAILURE_KINDS = (
    FailureKind("hallucination", "Hallucinations: missing parts reported present",
                "ground truth absent, verdict intact or damaged", "P(present)"),
    FailureKind("not_found", "Present parts not found",
                "ground truth intact, damaged or occluded, verdict not_found", "best score seen"),
    FailureKind("mislocalized", "Badly localized boxes",
                "ground truth present, verdict present (any state) with a box at IoU < {iou} "
                "with the part", "confidence"),
    FailureKind("missed_damage", "Missed damage: damaged parts called intact or occluded",
                "ground truth damaged, verdict intact or occluded", "confidence"),
    FailureKind("false_alarm", "False alarms: intact parts called damaged",
                "ground truth intact, verdict damaged", "confidence"),
    FailureKind("occluded_absent", "Occluded / absent confusions",
                "ground truth occluded, verdict absent; or ground truth absent, verdict occluded",
                "confidence"),
    FailureKind("called_absent", "Present parts called absent",
                "ground truth intact or damaged, verdict absent", "confidence"),
    FailureKind("other_state", "Other state confusions",
                "ground truth intact, verdict occluded; or ground truth occluded, verdict intact "
                "or damaged", "confidence"),
)
KIND_NAMES = tuple(k.name for k in FAILURE_KINDS)
NO_FAILURE = -1


def _state_ids(state_names):
    names = list(state_names)
    return (names.index("intact"), names.index("damaged"), names.index("absent"),
            names.index("occluded"))


def classify_failures(pairs, state_names=STATE_NAMES, iou_thresh=LOCALIZED_IOU):
    """The failure kind of every pair (module docstring).

    Args:
        pairs (dict): :func:`~bikestate.evaluation.verification.verdict_pairs`'s output, n rows.
        state_names (sequence[str]): S names, with intact, damaged, absent and occluded.
        iou_thresh (float): IoU below which a present verdict on a present part is
            ``mislocalized``.
    Returns:
        ndarray: (n,) int64 index into :data:`FAILURE_KINDS`, -1 for a right verdict.
    """
    intact, damaged, absent, occluded = _state_ids(state_names)
    gt = np.asarray(pairs["gt_state"], dtype=np.int64)
    verdict = np.asarray(pairs["verdict"], dtype=np.int64)
    iou = np.asarray(pairs["iou"], dtype=np.float64)
    present_gt = gt != absent
    present_verdict = (verdict != NOT_FOUND_ID) & (verdict != absent)
    rules = {
        "hallucination": (gt == absent) & np.isin(verdict, (intact, damaged)),
        "not_found": present_gt & (verdict == NOT_FOUND_ID),
        "mislocalized": present_gt & present_verdict & (iou < iou_thresh),
        "missed_damage": (gt == damaged) & np.isin(verdict, (intact, occluded)),
        "false_alarm": (gt == intact) & (verdict == damaged),
        "occluded_absent": (((gt == occluded) & (verdict == absent))
                            | ((gt == absent) & (verdict == occluded))),
        "called_absent": np.isin(gt, (intact, damaged)) & (verdict == absent),
        "other_state": (((gt == intact) & (verdict == occluded))
                        | ((gt == occluded) & np.isin(verdict, (intact, damaged)))),
    }
    kinds = np.full(gt.size, NO_FAILURE, dtype=np.int64)
    for k in reversed(range(len(FAILURE_KINDS))):  # earlier kinds overwrite later ones
        kinds[rules[FAILURE_KINDS[k].name]] = k
    return kinds


def ranking_values(pairs, kinds):
    """The figure each failure is ranked by, higher first: P(present) for hallucinations, the
    best score seen for parts not found, the verdict's confidence for the others (0 for right
    verdicts)."""
    kinds = np.asarray(kinds)
    values = np.asarray(pairs["confidence"], dtype=np.float64).copy()
    hallucination = kinds == KIND_NAMES.index("hallucination")
    values[hallucination] = pairs["p_present"][hallucination]
    not_found = kinds == KIND_NAMES.index("not_found")
    values[not_found] = pairs["score"][not_found]
    values[kinds == NO_FAILURE] = 0.0
    return values


def rank_failures(pairs, kinds):
    """Row indices of the failures of each kind, most confident first.

    Returns:
        list[ndarray]: one (n_k,) int64 array per kind of :data:`FAILURE_KINDS`; ties by image
        id, then part index.
    """
    kinds = np.asarray(kinds)
    values = ranking_values(pairs, kinds)
    order = np.lexsort((pairs["part"], pairs["image_id"], -values))
    return [order[kinds[order] == k] for k in range(len(FAILURE_KINDS))]


def failure_counts(pairs, kinds, num_parts):
    """(P, K) number of failures per part and kind."""
    kinds = np.asarray(kinds)
    failed = kinds != NO_FAILURE
    counts = np.zeros((num_parts, len(FAILURE_KINDS)), dtype=np.int64)
    np.add.at(counts, (np.asarray(pairs["part"], dtype=np.int64)[failed], kinds[failed]), 1)
    return counts


def eligible_counts(pairs, state_names=STATE_NAMES):
    """(K,) number of pairs that could fail in each way: the ground-truth states each kind
    starts from (a kind's count over it is its rate)."""
    intact, damaged, absent, occluded = _state_ids(state_names)
    gt = np.asarray(pairs["gt_state"])
    present = int((gt != absent).sum())
    by_kind = {
        "hallucination": (gt == absent).sum(), "not_found": present, "mislocalized": present,
        "missed_damage": (gt == damaged).sum(), "false_alarm": (gt == intact).sum(),
        "occluded_absent": np.isin(gt, (occluded, absent)).sum(),
        "called_absent": np.isin(gt, (intact, damaged)).sum(),
        "other_state": np.isin(gt, (intact, occluded)).sum(),
    }
    return np.array([int(by_kind[name]) for name in KIND_NAMES], dtype=np.int64)


def top_parts(counts, part_names, k=3):
    """The parts accounting for most failures of each kind.

    Args:
        counts (ndarray): (P, K) :func:`failure_counts`.
    Returns:
        list[list[dict]]: per kind, up to ``k`` ``{"part", "count", "share"}`` (share of the
        kind's failures), most first (ties in part order); parts without any left out.
    """
    result = []
    for column in np.asarray(counts).T:
        total = column.sum()
        order = np.argsort(-column, kind="stable")[:k]
        result.append([{"part": part_names[p], "count": int(column[p]),
                        "share": float(column[p] / total)} for p in order if column[p] > 0])
    return result


def analyze_failures(pairs, part_names, state_names=STATE_NAMES, ground_truths=None,
                     image_names=None, iou_thresh=LOCALIZED_IOU):
    """Everything the failure page shows, as JSON-able data.

    Args:
        pairs (dict): :func:`~bikestate.evaluation.verification.verdict_pairs`'s output.
        part_names (sequence[str]): P names, by part index.
        state_names (sequence[str]): S names.
        ground_truths (dict[int, dict] or None): the ground truth ``pairs`` were made from
            (``boxes`` (M, 4) XYXY, ``classes``, optional ``iscrowd``), for the ground-truth
            boxes of each case.
        image_names (dict[int, str] or None): file name per image id.
        iou_thresh (float): IoU below which a box is badly localized.
    Returns:
        dict: ``num_images``, ``num_pairs``, ``num_failures``, ``iou_thresh``,
        ``kinds`` (per kind: ``kind``, ``title``, ``definition``, ``ranked_by``, ``count``,
        ``eligible``, ``rate``, ``top_parts``), ``counts`` (``parts``, ``kinds``, ``matrix``
        (P, K)) and ``cases`` {kind: [case, ...] most confident first}. A case has ``rank``
        (1 = worst), ``row`` (in ``pairs``), ``image_id``, ``file_name``, ``part``,
        ``gt_state``, ``verdict``, ``ranked_by``, ``rank_value``, ``score``, ``p_present``,
        ``confidence``, ``p_state`` {state: score x p[state]} (the rule's P(state)),
        ``state_probs`` {state: p[state]} (the state head's), ``iou``, ``box`` (the speaking
        detection's XYXY box, None without one) and ``gt_boxes`` (the part's ground-truth
        XYXY boxes).
    """
    kinds = classify_failures(pairs, state_names, iou_thresh)
    ranked = rank_failures(pairs, kinds)
    values = ranking_values(pairs, kinds)
    counts = failure_counts(pairs, kinds, len(part_names))
    eligible = eligible_counts(pairs, state_names)
    tops = top_parts(counts, part_names)
    summary = []
    for k, kind in enumerate(FAILURE_KINDS):
        count = int(counts[:, k].sum())
        summary.append({"kind": kind.name, "title": kind.title,
                        "definition": kind.definition.format(iou=iou_thresh),
                        "ranked_by": kind.ranked_by, "count": count,
                        "eligible": int(eligible[k]),
                        "rate": count / eligible[k] if eligible[k] else None,
                        "top_parts": tops[k]})
    cases = {}
    for k, kind in enumerate(FAILURE_KINDS):
        cases[kind.name] = [
            _case(pairs, int(row), rank, kind, values[row], part_names, state_names,
                  ground_truths, image_names)
            for rank, row in enumerate(ranked[k], start=1)]
    return {
        "num_images": int(np.unique(pairs["image_id"]).size),
        "num_pairs": int(len(pairs["image_id"])),
        "num_failures": int((kinds != NO_FAILURE).sum()),
        "iou_thresh": float(iou_thresh),
        "kinds": summary,
        "counts": {"parts": list(part_names), "kinds": list(KIND_NAMES),
                   "matrix": counts.tolist()},
        "cases": cases,
    }


def _case(pairs, row, rank, kind, value, part_names, state_names, ground_truths, image_names):
    image_id = int(pairs["image_id"][row])
    part = int(pairs["part"][row])
    score = float(pairs["score"][row])
    probs = np.asarray(pairs["state_probs"][row], dtype=np.float64)
    box = np.asarray(pairs["box"][row], dtype=np.float64)
    gt_boxes = []
    if ground_truths is not None and image_id in ground_truths:
        gt = ground_truths[image_id]
        classes = np.asarray(gt["classes"]).reshape(-1)
        own = classes == part
        if "iscrowd" in gt:
            own &= ~np.asarray(gt["iscrowd"], dtype=bool).reshape(-1)
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)[own].tolist()
    return {
        "kind": kind.name, "rank": rank, "row": row, "image_id": image_id,
        "file_name": (image_names or {}).get(image_id, str(image_id)),
        "part": part_names[part], "gt_state": state_names[int(pairs["gt_state"][row])],
        "verdict": verdict_name(pairs["verdict"][row], state_names),
        "ranked_by": kind.ranked_by, "rank_value": float(value), "score": score,
        "p_present": float(pairs["p_present"][row]),
        "confidence": float(pairs["confidence"][row]),
        "p_state": {name: score * float(p) for name, p in zip(state_names, probs)},
        "state_probs": {name: float(p) for name, p in zip(state_names, probs)},
        "iou": float(pairs["iou"][row]),
        "box": None if int(pairs["detection"][row]) < 0 else box.tolist(),
        "gt_boxes": gt_boxes,
    }
