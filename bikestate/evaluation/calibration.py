"""Choosing the operating point of the verdict rule on validation data.

Given the (image, part) pairs of a validation set (:func:`.verification.verdict_pairs`), it
chooses the two things the verdict rule leaves open (:mod:`bikestate.verdict`):

1. the **presence rule and threshold**: for each way of forming ``P(present)``
   (:data:`~bikestate.verdict.PRESENCE_RULES`), the highest threshold that still reports at
   least ``present_recall`` (e.g. 95 %) of the present parts as present; the rule that reports
   the fewest absent parts present at that recall is kept (ties: the default
   ``score_x_state``). Everything below the threshold is ``absent`` (or ``not_found`` without
   a detection good enough to speak);
2. the **state biases**: offsets added to the log probabilities of damaged and occluded (intact
   is the reference, 0) before the argmax over the present states, searched on a grid to
   maximize the verdict macro-F1 (or the damage F1), ties going to the smaller correction.

The result is an :class:`~bikestate.verdict.OperatingPoint`, saved as ``thresholds.json`` beside
the weights by ``tools/calibrate.py`` and at the end of training.
"""
import itertools

import numpy as np

from ..constants import STATE_NAMES
from ..utils.errors import ConfigError
from ..verdict import NOT_FOUND_ID, PRESENCE_RULES, OperatingPoint, decide_states, \
    presence_probability
from .verification import rate_at_recall, verification_metrics

__all__ = ["BIAS_GRID", "OBJECTIVES", "check_calibration_config", "choose_operating_point",
           "apply_operating_point"]

# Candidate log-probability offsets of each biased state: exp(3) ~ 20x in odds either way.
BIAS_GRID = tuple(np.round(np.arange(-3.0, 3.0001, 0.25), 2))
# What the state biases maximize: a key of verification_metrics.
OBJECTIVES = ("macro_f1", "damage_f1")


def apply_operating_point(pairs, operating_point, state_names=STATE_NAMES):
    """The pairs with ``p_present``, ``verdict`` and ``confidence`` recomputed under another
    operating point (the speaking detection stays the same: it is the highest-scoring one
    whatever the rule)."""
    absent = state_names.index("absent")
    result = dict(pairs)
    result["p_present"] = presence_probability(
        np.where(pairs["detection"] >= 0, pairs["score"], 0.0), pairs["state_probs"],
        operating_point.presence, absent, pairs.get("vote"))
    state = decide_states(pairs["state_probs"], result["p_present"], operating_point, absent)
    found = (pairs["detection"] >= 0) & (pairs["score"] >= operating_point.score_thresh)
    result["verdict"] = np.where(found, state, NOT_FOUND_ID).astype(np.int64)
    chosen = pairs["state_probs"][np.arange(len(state)), state] if len(state) else np.zeros(0)
    result["confidence"] = np.where(found, pairs["score"] * chosen, 0.0)
    return result


def _presence_threshold(p_present, is_present, present_recall):
    """(hallucination rate, threshold): the highest P(present) threshold keeping
    ``present_recall`` of the present parts, or the lowest positive P(present) when the target
    is out of reach without calling undetected parts present."""
    rate, threshold = rate_at_recall(p_present, is_present, present_recall)
    if not threshold > 0:
        positive = p_present[p_present > 0]
        threshold = float(positive.min()) if positive.size else 0.0
        rate = float(np.mean(p_present[~is_present] >= threshold)) if (~is_present).any() \
            else float("nan")
    return float(rate), float(threshold)


def check_calibration_config(cfg):
    """One :class:`ConfigError` for a ``TEST.BIKESTATE.CALIBRATION`` value the calibration
    cannot use."""
    settings = cfg.TEST.BIKESTATE.CALIBRATION
    if not 0.0 < settings.PRESENT_RECALL <= 1.0:
        raise ConfigError("TEST.BIKESTATE.CALIBRATION.PRESENT_RECALL must be in (0, 1], got "
                          f"{settings.PRESENT_RECALL}")
    if settings.OBJECTIVE not in OBJECTIVES:
        raise ConfigError(f"TEST.BIKESTATE.CALIBRATION.OBJECTIVE must be one of "
                          f"{', '.join(OBJECTIVES)}, got {settings.OBJECTIVE!r}")


def choose_operating_point(pairs, state_names=STATE_NAMES, present_recall=0.95,
                           objective="macro_f1", score_thresh=0.5, bias_grid=BIAS_GRID,
                           biased_states=("damaged", "occluded"), presence_rules=PRESENCE_RULES,
                           detection_score_thresh=0.0):
    """Choose the presence rule and threshold, and the state biases (module docstring).

    Args:
        pairs (dict): validation pairs from :func:`.verification.verdict_pairs`.
        present_recall (float): share of present parts the presence threshold must keep.
        objective (str): one of :data:`OBJECTIVES`.
        score_thresh (float): the detection threshold below which a part is not found. Under
            ``score_x_state`` it is lowered to the presence threshold when that is lower, and
            under ``state`` and ``vote`` to the lowest detection score of the pairs, so that
            every part above the presence threshold has a verdict; never below
            ``detection_score_thresh``.
        presence_rules (sequence[str]): the candidate rules, the preferred one first; ``vote``
            is a candidate only when the pairs carry each part's ``vote``.
        detection_score_thresh (float): the detector's threshold when the pairs were collected
            (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``): no detection below it was seen, so a lower
            score threshold would change nothing here but would let a predictor run at it
            report parts the calibration never saw.
        bias_grid (sequence[float]): candidate offsets of each state in ``biased_states``.
    Returns:
        (OperatingPoint, dict): the operating point (``chosen_on`` filled) and the validation
        figures at it.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    absent = state_names.index("absent")
    is_present = pairs["gt_state"] != absent
    detected = (pairs["detection"] >= 0) & (pairs["score"] > 0)
    presence_rules = [r for r in presence_rules if r != "vote" or "vote" in pairs]
    candidates_by_rule = {}
    for rule in presence_rules:
        p_present = presence_probability(np.where(detected, pairs["score"], 0.0),
                                         pairs["state_probs"], rule, absent, pairs.get("vote"))
        rate, threshold = _presence_threshold(p_present, is_present, present_recall)
        reached = float(np.mean(p_present[is_present] >= threshold)) if is_present.any() \
            else float("nan")
        candidates_by_rule[rule] = (rate, threshold, reached)
    # NaN (no absent part to hallucinate) never wins over a number; ties keep the first rule.
    rule = min(presence_rules, key=lambda r: (not np.isfinite(candidates_by_rule[r][0]),
                                              candidates_by_rule[r][0]))
    presence = candidates_by_rule[rule][1]
    if rule == "score_x_state":
        score = min(float(score_thresh), presence) if presence > 0 else float(score_thresh)
    else:
        lowest = pairs["score"][detected]
        score = min(float(score_thresh), float(lowest.min())) if lowest.size else \
            float(score_thresh)
    score = max(score, float(detection_score_thresh))

    indices = [state_names.index(s) for s in biased_states]
    # Smaller corrections first, so that a tie keeps the one closest to the plain argmax.
    candidates = sorted(itertools.product(bias_grid, repeat=len(indices)),
                        key=lambda b: (sum(abs(x) for x in b), b))
    best, best_value = None, -np.inf
    for biases in candidates:
        bias = np.zeros(len(state_names))
        bias[indices] = biases
        point = OperatingPoint(score, presence, tuple(bias), rule)
        figures, _ = verification_metrics(apply_operating_point(pairs, point, state_names),
                                          state_names)
        value = figures[objective]
        if np.isfinite(value) and value > best_value + 1e-12:
            best, best_value = point, value
    if best is None:
        best = OperatingPoint(score, presence, presence=rule)
    figures, _ = verification_metrics(apply_operating_point(pairs, best, state_names),
                                      state_names)
    chosen_on = {"present_recall_target": present_recall, "objective": objective,
                 "num_pairs": int(len(pairs["gt_state"])),
                 # Each candidate presence rule's hallucination rate at its threshold and the
                 # present recall it reaches there (the target, or less when out of reach).
                 "presence_candidates": {
                     r: {"hallucination_rate": (v[0] if np.isfinite(v[0]) else None),
                         "presence_thresh": v[1],
                         "present_recall": (v[2] if np.isfinite(v[2]) else None)}
                     for r, v in candidates_by_rule.items()},
                 # NaN (undefined) as null: thresholds.json stays standard JSON.
                 "figures": {k: (figures[k] if np.isfinite(figures[k]) else None)
                             for k in ("present_recall", "hallucination_rate",
                                       "not_found_rate", "macro_f1", "damage_precision",
                                       "damage_recall", "auroc_present")}}
    return (OperatingPoint(best.score_thresh, best.presence_thresh, best.state_bias,
                           best.presence, chosen_on=chosen_on), figures)
