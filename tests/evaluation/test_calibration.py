"""Choosing the operating point on validation data, and what thresholds.json changes."""
import json

import numpy as np
import pytest

from bikestate.evaluation.calibration import apply_operating_point, choose_operating_point
from bikestate.evaluation.verification import verification_metrics
from bikestate.utils.errors import ConfigError
from bikestate.verdict import OperatingPoint, load_operating_point, thresholds_path

INTACT, DAMAGED, ABSENT, OCCLUDED = range(4)


def _pairs(rows):
    """rows: (gt state, detection score, state probabilities)."""
    gt, score, probs = zip(*rows)
    probs = np.array(probs, float)
    score = np.array(score, float)
    return {"gt_state": np.array(gt), "score": score, "state_probs": probs,
            "p_present": score * (1 - probs[:, ABSENT]),
            "detection": np.zeros(len(gt), np.int64), "verdict": np.zeros(len(gt), np.int64),
            "confidence": np.zeros(len(gt))}


def constructed_case():
    """20 present parts at P(present) 0.99 .. 0.80, 10 absent ones at 0.85 .. 0.40.

    Present: 12 intact (P(intact) 0.8, P(damaged) 0.2) and 8 damaged (0.6 / 0.4): the plain
    argmax calls every damaged part intact; any damaged bias in (log 1.5, log 4) = (0.41, 1.39)
    separates them, and the smallest on the grid is 0.5. Keeping 19 of 20 present parts (95 %)
    needs the threshold 0.81, the 19th P(present).
    """
    rows = []
    for k in range(20):
        score = 0.99 - 0.01 * k
        probs = [0.8, 0.2, 0.0, 0.0] if k % 5 < 3 else [0.6, 0.4, 0.0, 0.0]
        rows.append((INTACT if k % 5 < 3 else DAMAGED, score, probs))
    for k in range(10):
        rows.append((ABSENT, 0.85 - 0.05 * k, [0.5, 0.5, 0.0, 0.0]))
    return _pairs(rows)


def test_calibration_returns_the_known_best_point():
    pairs = constructed_case()
    point, figures = choose_operating_point(pairs, present_recall=0.95, score_thresh=0.5)
    assert point.presence_thresh == pytest.approx(0.81, abs=1e-12)
    assert point.state_bias == (0.0, 0.5, 0.0, 0.0)
    assert point.score_thresh == 0.5
    assert figures["present_recall"] == pytest.approx(19 / 20)
    # Absent parts at 0.85, 0.80 (< 0.81: absent), ...: only 0.85 is reported present.
    assert figures["hallucination_rate"] == pytest.approx(1 / 10)
    assert figures["damage_recall"] == pytest.approx(7 / 8)  # the one below 0.81 is "absent"
    plain, _ = verification_metrics(apply_operating_point(pairs, OperatingPoint(0.5)))
    assert plain["damage_recall"] == 0.0 and figures["macro_f1"] > plain["macro_f1"]


def test_presence_threshold_lowers_the_score_threshold_when_needed():
    pairs = constructed_case()
    point, _ = choose_operating_point(pairs, present_recall=0.95, score_thresh=0.9)
    assert point.score_thresh == pytest.approx(0.81)  # every part above it gets a verdict


def test_damage_objective():
    # Any positive damaged bias also turns the absent part at 0.85 (P 0.5 / 0.5, reported
    # present) damaged: 7 right of 8 claims, 7 of 8 damaged parts found -> F1 7/8, the best.
    point, figures = choose_operating_point(constructed_case(), objective="damage_f1")
    assert point.chosen_on["objective"] == "damage_f1"
    assert point.state_bias[1] == 0.5
    assert figures["damage_f1"] == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="objective"):
        choose_operating_point(constructed_case(), objective="accuracy")


def test_thresholds_file_round_trips(tmp_path):
    point, _ = choose_operating_point(constructed_case())
    weights = tmp_path / "model_best.pth"
    weights.write_bytes(b"")
    point.save(thresholds_path(str(weights)))
    loaded = load_operating_point("", str(weights))
    assert loaded == point and loaded.chosen_on == json.loads(json.dumps(point.chosen_on))
    assert loaded.source == str(tmp_path / "thresholds.json")
    assert load_operating_point("", str(tmp_path / "a" / "m.pth"), 0.3) == OperatingPoint(0.3)
    assert load_operating_point("", str(weights), score_thresh=0.2).score_thresh == 0.2


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"version": 9, "score_thresh": 0.5}', "version 9 is not supported"),
    ('{"version": 1}', "not a valid thresholds file"),
    ('{"version": 1, "score_thresh": 1.5}', "must be in [0, 1]"),
    ('{"version": 1, "score_thresh": 0.5, "state_bias": {"rusty": 1}}', "state_bias"),
])
def test_bad_thresholds_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "thresholds.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_operating_point(str(path))
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)
