"""The verdict rule: what a user is told about each part of a photographed bike.

One function, :func:`part_verdicts`, turns one image's detections into one verdict per part
(``intact``, ``damaged``, ``absent``, ``occluded`` or ``not_found``). The inspection report
(:func:`bikestate.inference.build_report`) shows its output, and the evaluator
(:class:`bikestate.evaluation.BikeStateEvaluator`) scores exactly the same output against the
ground truth, so a figure of the evaluator is a figure of what users see.

The rule, for each part of one image:

1. The detection of that part with the highest detection score speaks for it (anywhere in the
   image; ties: the first detection). Its state probabilities ``p`` (S,) give

   * ``P(present)``: the model's estimate that the part is there, 0 when the part has no
     detection at all. The operating point's ``presence`` says how it is formed:
     ``score_x_state`` (the default) is ``score x (1 - p[absent])``; ``state`` is
     ``1 - p[absent]`` alone, for models whose detector also scores the mount of a missing part
     high (it learned absent boxes as boxes of the part), so that its score says where the
     part should be rather than whether it is there; ``vote`` is the score-weighted mean of
     ``1 - p[absent]`` over all the part's detections, ``sum_d score_d (1 - p_d[absent]) /
     sum_d score_d``: each detection says "present" with the weight the detector gives it
     (``state`` trusts the top detection alone, which for a missing part may lie beside its
     empty mount or elsewhere, where the crop looks present). The
     calibration chooses between them on validation data;
   * ``P(state s) = score x p[s]`` (e.g. ``P(damaged)``, the figure damage AP ranks by).

2. If that detection scores below the operating point's ``score_thresh`` (or there is none),
   the verdict is ``not_found``: the model did not even find where the part should be.
3. Otherwise, with the default operating point (``presence_thresh`` None), the verdict is the
   state with the highest ``log p[s] + state_bias[s]`` (the plain argmax when the biases are
   0). With a calibrated ``presence_thresh``, the verdict is ``absent`` when
   ``P(present) < presence_thresh``, and otherwise the non-absent state with the highest
   ``log p[s] + state_bias[s]`` (a prior-corrected argmax).

The verdict's confidence is ``score x p[verdict]`` (0 for ``not_found``).

Operating points are chosen on validation data (:mod:`bikestate.evaluation.calibration`,
``tools/calibrate.py``) and stored as ``thresholds.json`` beside the weights; the predictor, the
report and the evaluator load that file when it is there (:func:`load_operating_point`).
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .constants import NOT_FOUND, STATE_ABSENT, STATE_NAMES

__all__ = [
    "NOT_FOUND_ID",
    "PRESENCE_FORMULAS",
    "PRESENCE_RULES",
    "THRESHOLDS_FILE",
    "OperatingPoint",
    "as_operating_point",
    "decide_states",
    "presence_probability",
    "part_verdicts",
    "verdict_name",
    "thresholds_path",
    "load_operating_point",
]

# Verdict code of a part that no detection speaks for (states are 0..S-1).
NOT_FOUND_ID = -1
# File name of a calibrated operating point, stored beside the weights it was chosen for.
THRESHOLDS_FILE = "thresholds.json"
# Format version of thresholds.json (2 added ``presence``); versions it does not list are refused.
THRESHOLDS_VERSION = 2
# Versions read: a version-1 file has no ``presence`` key and means ``score_x_state``.
READABLE_THRESHOLDS_VERSIONS = (1, 2)
# How P(present) is formed from the speaking detection (module docstring, step 1), and the
# formula of each as the report, the plots and the docs write it.
PRESENCE_FORMULAS = {"score_x_state": "score x (1 - P(absent))", "state": "1 - P(absent)",
                     "vote": "score-weighted mean of 1 - P(absent) over the part's detections"}
PRESENCE_RULES = tuple(PRESENCE_FORMULAS)


@dataclass(frozen=True)
class OperatingPoint:
    """The thresholds of the verdict rule (module docstring).

    Attributes:
        score_thresh (float): detections of a part scoring below it leave the part
            ``not_found``.
        presence_thresh (float or None): ``absent`` below this ``P(present)``; None: presence
            is decided by the argmax of the (biased) state probabilities.
        state_bias (tuple[float]): S offsets added to the log state probabilities before the
            argmax (0 everywhere: the plain argmax).
        presence (str): how P(present) is formed, one of :data:`PRESENCE_RULES`.
        source (str): where the values come from (``default``, a thresholds.json path).
        chosen_on (dict): what the calibration measured (dataset, targets, metrics); informative.
    """

    score_thresh: float = 0.5
    presence_thresh: Optional[float] = None
    state_bias: Tuple[float, ...] = (0.0,) * len(STATE_NAMES)
    presence: str = "score_x_state"
    source: str = field(default="default", compare=False)
    chosen_on: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        from .utils.errors import ConfigError

        where = f" in {self.source}" if self.source != "default" else ""
        if not 0.0 <= float(self.score_thresh) <= 1.0:
            raise ConfigError(f"score threshold{where} must be in [0, 1], got {self.score_thresh}")
        if self.presence_thresh is not None and not 0.0 <= float(self.presence_thresh) <= 1.0:
            raise ConfigError(f"presence threshold{where} must be in [0, 1], got "
                              f"{self.presence_thresh}")
        if not all(math.isfinite(float(b)) for b in self.state_bias):
            raise ConfigError(f"state biases{where} must be finite numbers, got "
                              f"{list(self.state_bias)}")
        if self.presence not in PRESENCE_RULES:
            raise ConfigError(f"presence rule{where} must be one of {', '.join(PRESENCE_RULES)}, "
                              f"got {self.presence!r}")
        object.__setattr__(self, "state_bias", tuple(float(b) for b in self.state_bias))

    def with_score_thresh(self, score_thresh):
        """A copy with another ``score_thresh`` (e.g. a user's ``--confidence-threshold``)."""
        return OperatingPoint(float(score_thresh), self.presence_thresh, self.state_bias,
                              self.presence, self.source, self.chosen_on)

    def describe(self, state_names=STATE_NAMES):
        """The rule and its values, as the report states them (a JSON-able dict)."""
        if self.presence_thresh is None:
            rule = ("not_found below score_thresh; otherwise the most probable state "
                    "(argmax of log P(state) + state_bias)")
        else:
            rule = (f"not_found below score_thresh; absent when "
                    f"{PRESENCE_FORMULAS[self.presence]} < "
                    "presence_thresh; otherwise the most probable non-absent state "
                    "(argmax of log P(state) + state_bias)")
        return {"rule": rule, "score_thresh": self.score_thresh,
                "presence_thresh": self.presence_thresh, "presence": self.presence,
                "state_bias": dict(zip(state_names, self.state_bias)), "source": self.source}

    def to_dict(self, state_names=STATE_NAMES):
        """The contents of thresholds.json."""
        return {"version": THRESHOLDS_VERSION, "score_thresh": self.score_thresh,
                "presence_thresh": self.presence_thresh, "presence": self.presence,
                "state_bias": dict(zip(state_names, self.state_bias)),
                "chosen_on": self.chosen_on}

    @classmethod
    def from_dict(cls, data, source, state_names=STATE_NAMES):
        """Parse thresholds.json contents; one-line :class:`ConfigError` for a bad file."""
        from .utils.errors import ConfigError
        from .utils.io import is_json_number

        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, found {type(data).__name__}")
        version = data.get("version")
        if type(version) is not int or version not in READABLE_THRESHOLDS_VERSIONS:
            readable = ", ".join(str(v) for v in READABLE_THRESHOLDS_VERSIONS)
            raise ConfigError(f"{source}: thresholds version {version!r} is not "
                              f"supported (this bikestate reads versions {readable})")
        bias = data.get("state_bias", {})
        if not isinstance(bias, dict) or set(bias) - set(state_names) or \
                not all(is_json_number(b) for b in bias.values()):
            raise ConfigError(f"{source}: state_bias must map state names "
                              f"({', '.join(state_names)}) to numbers")
        if "score_thresh" not in data:
            raise ConfigError(f"{source}: not a valid thresholds file (no score_thresh)")
        for key in ("score_thresh", "presence_thresh"):
            value = data.get(key)
            if not is_json_number(value) and not (key == "presence_thresh" and value is None):
                raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        try:
            return cls(score_thresh=float(data["score_thresh"]),
                       presence_thresh=(None if data.get("presence_thresh") is None
                                        else float(data["presence_thresh"])),
                       state_bias=tuple(float(bias.get(s, 0.0)) for s in state_names),
                       presence=str(data.get("presence", "score_x_state")),
                       source=source, chosen_on=dict(data.get("chosen_on") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{source}: not a valid thresholds file ({type(e).__name__}: {e})")

    def save(self, path, state_names=STATE_NAMES):
        from .utils.io import atomic_write_json

        atomic_write_json(self.to_dict(state_names), path, indent=2)

    @classmethod
    def load(cls, path, state_names=STATE_NAMES):
        from .utils.errors import ConfigError

        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise ConfigError(f"thresholds file {path} cannot be read ({e.strerror or e})")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"thresholds file {path} is not valid JSON ({e})")
        return cls.from_dict(data, path, state_names)


def as_operating_point(value):
    """``value`` if it is an :class:`OperatingPoint`; a float is the score threshold of the
    default rule."""
    if isinstance(value, OperatingPoint):
        return value
    return OperatingPoint(score_thresh=float(value))


def thresholds_path(weights):
    """Where the operating point of a weights file lives: ``thresholds.json`` beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(weights)), THRESHOLDS_FILE)


def load_operating_point(thresholds_file="", weights="", default_score_thresh=0.5,
                         score_thresh=None):
    """The operating point a tool should use.

    Args:
        thresholds_file (str): an explicit thresholds.json (config key
            ``TEST.BIKESTATE.THRESHOLDS_FILE``); "" looks beside ``weights``.
        weights (str): the model's weights file; its folder's thresholds.json is used when
            present and ``thresholds_file`` is "".
        default_score_thresh (float): ``score_thresh`` of the default rule, used when there is
            no file (config key ``TEST.BIKESTATE.VERIFY_SCORE_THRESH``).
        score_thresh (float or None): a user's explicit threshold: overrides both.
    Returns:
        OperatingPoint
    """
    path = thresholds_file
    if not path and weights and "://" not in weights:
        candidate = thresholds_path(weights)
        path = candidate if os.path.isfile(candidate) else ""
    if not path:
        return OperatingPoint(float(default_score_thresh if score_thresh is None
                                    else score_thresh))
    point = OperatingPoint.load(path)
    return point if score_thresh is None else point.with_score_thresh(score_thresh)


def verdict_name(code, state_names=STATE_NAMES):
    """``not_found`` for :data:`NOT_FOUND_ID`, else the state's name."""
    return NOT_FOUND if int(code) == NOT_FOUND_ID else state_names[int(code)]


def presence_probability(score, state_probs, presence="score_x_state", absent=STATE_ABSENT,
                         vote=None):
    """P(present) of each part from its speaking detection (module docstring, step 1).

    Args:
        score (ndarray): (n,) score of the speaking detection, 0 where the part has none.
        state_probs (ndarray): (n, S) its state probabilities (any values where none).
        presence (str): one of :data:`PRESENCE_RULES`.
        vote (ndarray or None): (n,) the score-weighted mean of ``1 - P(absent)`` over each
            part's detections (``part_verdicts``'s ``vote``); required by the ``vote`` rule.
    Returns:
        ndarray: (n,) P(present), 0 where ``score`` is 0.
    """
    score = np.asarray(score, dtype=np.float64)
    if presence == "vote":
        if vote is None:
            raise ValueError("the 'vote' presence rule needs each part's vote (part_verdicts)")
        return np.where(score > 0, np.asarray(vote, dtype=np.float64), 0.0)
    not_absent = 1.0 - np.asarray(state_probs, dtype=np.float64)[:, absent]
    if presence == "score_x_state":
        return score * not_absent
    return np.where(score > 0, not_absent, 0.0)


def decide_states(state_probs, p_present, operating_point, absent=STATE_ABSENT):
    """Step 3 of the rule for found parts: the state of each row.

    Args:
        state_probs (ndarray): (n, S) state probabilities.
        p_present (ndarray): (n,) P(present) (:func:`presence_probability`).
        operating_point (OperatingPoint): presence threshold and state biases.
    Returns:
        ndarray: (n,) int64 state indices.
    """
    logits = np.log(np.maximum(state_probs, 1e-12)) + np.asarray(operating_point.state_bias)
    if operating_point.presence_thresh is None:
        return logits.argmax(axis=1)
    logits[:, absent] = -np.inf
    return np.where(np.asarray(p_present) < operating_point.presence_thresh, absent,
                    logits.argmax(axis=1))


def part_verdicts(scores, classes, state_scores, num_parts, operating_point,
                  absent=STATE_ABSENT):
    """The verdict of every part of one image (module docstring).

    Args:
        scores (ndarray): (N,) detection scores.
        classes (ndarray): (N,) part index of each detection, in [0, num_parts).
        state_scores (ndarray): (N, S) state probabilities, rows sum to 1.
        num_parts (int): P, the number of parts the model knows.
        operating_point (OperatingPoint): thresholds of the rule.
        absent (int): index of the ``absent`` state.
    Returns:
        dict of arrays, one row per part (index = part):
            ``detection`` (P,) int64 index of the detection speaking for the part, -1 if none;
            ``score`` (P,) its score (0 if none); ``state_probs`` (P, S) its state
            probabilities (0 if none); ``vote`` (P,) the score-weighted mean of
            ``1 - P(absent)`` over the part's detections (0 if none); ``p_present`` (P,)
            (:func:`presence_probability`);
            ``verdict`` (P,) int64 state index or :data:`NOT_FOUND_ID`; ``confidence`` (P,)
            ``score x p[verdict]`` (0 for not found).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    num_states = len(operating_point.state_bias)
    state_scores = np.asarray(state_scores, dtype=np.float64).reshape(-1, num_states)

    # Highest score per part, the first detection on ties: sort by part, -score, index.
    detection = np.full(num_parts, -1, dtype=np.int64)
    if scores.size:
        order = np.lexsort((np.arange(scores.size), -scores, classes))
        parts, first = np.unique(classes[order], return_index=True)
        inside = (parts >= 0) & (parts < num_parts)
        detection[parts[inside]] = order[first[inside]]
    has = detection >= 0
    score = np.where(has, scores[np.maximum(detection, 0)] if scores.size else 0.0, 0.0)
    probs = np.zeros((num_parts, num_states))
    if scores.size:
        probs[has] = state_scores[detection[has]]
    # Each part's detections vote on its presence with their scores as weights.
    vote = np.zeros(num_parts)
    if scores.size:
        inside = (classes >= 0) & (classes < num_parts)
        weight = np.bincount(classes[inside], scores[inside], num_parts)
        said = np.bincount(classes[inside], scores[inside] * (1.0 - state_scores[inside, absent]),
                           num_parts)
        vote = np.divide(said, weight, out=np.zeros(num_parts), where=weight > 0)
    p_present = presence_probability(score, probs, operating_point.presence, absent, vote)

    state = decide_states(probs, p_present, operating_point, absent)
    found = has & (score >= operating_point.score_thresh)
    verdict = np.where(found, state, NOT_FOUND_ID).astype(np.int64)
    confidence = np.where(found, score * probs[np.arange(num_parts), state], 0.0)
    return {"detection": detection, "score": score, "state_probs": probs, "vote": vote,
            "p_present": p_present, "verdict": verdict, "confidence": confidence}
