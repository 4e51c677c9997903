"""Choosing the operating point of the verdict rule on validation data.

Given the (image, part) pairs of a validation set (:func:`.verification.verdict_pairs`), it
chooses the two things the verdict rule leaves open (:mod:`bikestate.verdict`):

1. the **presence threshold**: the highest ``P(present)`` threshold that still reports at least
   ``present_recall`` (e.g. 95 %) of the present parts as present; everything below it is
   ``absent`` (or ``not_found`` without a detection good enough to speak);
2. the **state biases**: offsets added to the log probabilities of damaged and occluded (intact
   is the reference, 0) before the argmax over the present states, searched on a grid to
   maximize the verdict macro-F1 (or the damage F1), ties going to the smaller correction.

The result is an :class:`~bikestate.verdict.OperatingPoint`, saved as ``thresholds.json`` beside
the weights by ``tools/calibrate.py`` and at the end of training.
"""
import itertools

import numpy as np

from ..constants import STATE_NAMES
from ..verdict import NOT_FOUND_ID, OperatingPoint, decide_states
from .verification import rate_at_recall, verification_metrics

__all__ = ["BIAS_GRID", "OBJECTIVES", "choose_operating_point", "apply_operating_point"]

# Candidate log-probability offsets of each biased state: exp(3) ~ 20x in odds either way.
BIAS_GRID = tuple(np.round(np.arange(-3.0, 3.0001, 0.25), 2))
# What the state biases maximize: a key of verification_metrics.
OBJECTIVES = ("macro_f1", "damage_f1")


def apply_operating_point(pairs, operating_point, state_names=STATE_NAMES):
    """The pairs with ``verdict`` and ``confidence`` recomputed under another operating point
    (the speaking detection stays the same: it is the highest-scoring one whatever the rule)."""
    absent = state_names.index("absent")
    state = decide_states(pairs["state_probs"], pairs["p_present"], operating_point, absent)
    found = (pairs["detection"] >= 0) & (pairs["score"] >= operating_point.score_thresh)
    result = dict(pairs)
    result["verdict"] = np.where(found, state, NOT_FOUND_ID).astype(np.int64)
    chosen = pairs["state_probs"][np.arange(len(state)), state] if len(state) else np.zeros(0)
    result["confidence"] = np.where(found, pairs["score"] * chosen, 0.0)
    return result


def choose_operating_point(pairs, state_names=STATE_NAMES, present_recall=0.95,
                           objective="macro_f1", score_thresh=0.5, bias_grid=BIAS_GRID,
                           biased_states=("damaged", "occluded")):
    """Choose the presence threshold and the state biases (module docstring).

    Args:
        pairs (dict): validation pairs from :func:`.verification.verdict_pairs`.
        present_recall (float): share of present parts the presence threshold must keep.
        objective (str): one of :data:`OBJECTIVES`.
        score_thresh (float): the detection threshold below which a part is not found; lowered
            to the presence threshold when that is lower, so that every part above the
            presence threshold has a verdict.
        bias_grid (sequence[float]): candidate offsets of each state in ``biased_states``.
    Returns:
        (OperatingPoint, dict): the operating point (``chosen_on`` filled) and the validation
        figures at it.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    absent = state_names.index("absent")
    is_present = pairs["gt_state"] != absent
    _, threshold = rate_at_recall(pairs["p_present"], is_present, present_recall)
    if not threshold > 0:
        # The target is out of reach without calling undetected parts present: keep every
        # part that has any P(present).
        positive = pairs["p_present"][pairs["p_present"] > 0]
        threshold = float(positive.min()) if positive.size else 0.0
    presence = float(threshold)
    score = min(float(score_thresh), presence) if presence > 0 else float(score_thresh)

    indices = [state_names.index(s) for s in biased_states]
    # Smaller corrections first, so that a tie keeps the one closest to the plain argmax.
    candidates = sorted(itertools.product(bias_grid, repeat=len(indices)),
                        key=lambda b: (sum(abs(x) for x in b), b))
    best, best_value = None, -np.inf
    for biases in candidates:
        bias = np.zeros(len(state_names))
        bias[indices] = biases
        point = OperatingPoint(score, presence, tuple(bias))
        figures, _ = verification_metrics(apply_operating_point(pairs, point, state_names),
                                          state_names)
        value = figures[objective]
        if np.isfinite(value) and value > best_value + 1e-12:
            best, best_value = point, value
    if best is None:
        best = OperatingPoint(score, presence)
    figures, _ = verification_metrics(apply_operating_point(pairs, best, state_names),
                                      state_names)
    chosen_on = {"present_recall_target": present_recall, "objective": objective,
                 "num_pairs": int(len(pairs["gt_state"])),
                 # NaN (undefined) as null: thresholds.json stays standard JSON.
                 "figures": {k: (figures[k] if np.isfinite(figures[k]) else None)
                             for k in ("present_recall", "hallucination_rate",
                                       "not_found_rate", "macro_f1", "damage_precision",
                                       "damage_recall")}}
    return (OperatingPoint(best.score_thresh, best.presence_thresh, best.state_bias,
                           chosen_on=chosen_on), figures)
