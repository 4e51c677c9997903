"""Choosing the operating point on validation data, and what thresholds.json changes."""
import json

import numpy as np
import pytest

from bikestate.evaluation.calibration import apply_operating_point, choose_operating_point
from bikestate.evaluation.verification import verification_metrics
from bikestate.utils.errors import ConfigError
from bikestate.verdict import OperatingPoint, load_operating_point, part_verdicts, \
    presence_probability, thresholds_path

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


def test_score_threshold_never_goes_below_the_detectors():
    """The calibration saw no detection below the detector's threshold: a score threshold
    under it would let a predictor run at it report parts the calibration never saw. The
    validation figures are the same either way (every pair scores above it)."""
    pairs = constructed_case()
    low, low_figures = choose_operating_point(pairs, present_recall=0.95, score_thresh=0.9)
    floored, _ = choose_operating_point(pairs, present_recall=0.95, score_thresh=0.9,
                                        detection_score_thresh=0.85)
    assert low.score_thresh == pytest.approx(0.81) and floored.score_thresh == 0.85
    floored, figures = choose_operating_point(pairs, present_recall=0.95, score_thresh=0.9,
                                              detection_score_thresh=0.4)
    assert floored.score_thresh == pytest.approx(0.81)
    assert figures == pytest.approx(low_figures, nan_ok=True)


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


def mount_scoring_case():
    """A detector that scores the mount of a missing part higher than many present parts.

    20 present parts: scores 0.10 .. 0.48, P(absent) 0.1. 10 absent parts: score 0.9,
    P(absent) 0.7 .. 0.88. Under ``score x (1 - P(absent))`` (0.09 .. 0.43 against 0.11 .. 0.27)
    keeping 19 present parts needs the threshold 0.108 and reports all 10 absent parts present;
    ``1 - P(absent)`` (0.9 against 0.12 .. 0.30) separates them.
    """
    rows = [(INTACT, 0.10 + 0.02 * k, [0.9, 0.0, 0.1, 0.0]) for k in range(20)]
    rows += [(ABSENT, 0.9, [0.3 - 0.02 * k, 0.0, 0.7 + 0.02 * k, 0.0]) for k in range(10)]
    return _pairs(rows)


def test_calibration_chooses_the_presence_rule_that_hallucinates_less():
    pairs = mount_scoring_case()
    point, figures = choose_operating_point(pairs, present_recall=0.95, score_thresh=0.5)
    candidates = point.chosen_on["presence_candidates"]
    assert candidates["score_x_state"]["hallucination_rate"] == pytest.approx(1.0)
    assert candidates["state"]["hallucination_rate"] == 0.0
    assert point.presence == "state" and point.presence_thresh == pytest.approx(0.9)
    # Every detection speaks: the score threshold drops to the lowest detection score.
    assert point.score_thresh == pytest.approx(0.10)
    assert figures["present_recall"] == 1.0 and figures["hallucination_rate"] == 0.0
    # Restricted to the default rule, the same pairs keep the old behaviour.
    default, default_figures = choose_operating_point(pairs, presence_rules=("score_x_state",))
    assert default.presence == "score_x_state" and default_figures["hallucination_rate"] == 1.0
    # The constructed case above (P(absent) 0 everywhere) keeps the default rule.
    assert choose_operating_point(constructed_case())[0].presence == "score_x_state"


def test_part_verdicts_under_the_state_presence_rule():
    # Part 0: two detections, the higher score (0.3, P(absent) 0.2) speaks; part 1: none;
    # part 2: P(absent) 0.9 -> absent.
    scores = np.array([0.2, 0.3, 0.8])
    classes = np.array([0, 0, 2])
    probs = np.array([[0.1, 0.0, 0.9, 0.0], [0.7, 0.1, 0.2, 0.0], [0.1, 0.0, 0.9, 0.0]])
    point = OperatingPoint(0.05, 0.5, presence="state")
    result = part_verdicts(scores, classes, probs, 3, point, ABSENT)
    assert result["p_present"] == pytest.approx([0.8, 0.0, 0.1])
    assert result["verdict"].tolist() == [INTACT, -1, ABSENT]
    product = part_verdicts(scores, classes, probs, 3, OperatingPoint(0.05, 0.5), ABSENT)
    assert product["p_present"] == pytest.approx([0.24, 0.0, 0.08])
    assert product["verdict"].tolist() == [ABSENT, -1, ABSENT]


def test_part_verdicts_under_the_vote_presence_rule():
    # Part 0: three detections; the vote is the score-weighted mean of 1 - P(absent):
    # (0.6 x 0.9 + 0.3 x 0.2 + 0.1 x 0.5) / (0.6 + 0.3 + 0.1) = 0.65. Part 1: none. Part 2:
    # one detection, the vote is its own 1 - P(absent) = 0.3 -> absent below 0.5.
    scores = np.array([0.3, 0.6, 0.8, 0.1])
    classes = np.array([0, 0, 2, 0])
    probs = np.array([[0.1, 0.1, 0.8, 0.0], [0.9, 0.0, 0.1, 0.0], [0.3, 0.0, 0.7, 0.0],
                      [0.5, 0.0, 0.5, 0.0]])
    point = OperatingPoint(0.05, 0.5, presence="vote")
    result = part_verdicts(scores, classes, probs, 3, point, ABSENT)
    assert result["vote"] == pytest.approx([0.65, 0.0, 0.3])
    assert result["p_present"] == pytest.approx([0.65, 0.0, 0.3])
    # The top detection still speaks for the state and the box.
    assert result["detection"].tolist() == [1, -1, 2]
    assert result["verdict"].tolist() == [INTACT, -1, ABSENT]
    with pytest.raises(ValueError, match="needs each part's vote"):
        presence_probability(np.array([0.5]), np.array([[1.0, 0, 0, 0]]), "vote", ABSENT)


def off_mount_case():
    """A missing part whose top detection lies off its mount, outvoted by the one on it.

    20 present parts: one detection each, score 0.9, P(absent) 0.1 + 0.01 k. 10 absent parts:
    the top detection (score 0.9) is on something present-looking (P(absent) 0.05), a second one
    (score 0.8) on the empty mount says absent (P(absent) 0.95): the vote is
    (0.9 x 0.95 + 0.8 x 0.05) / 1.7 = 0.53, below every present part's (0.71 .. 0.9), while
    ``state`` (0.95) and ``score_x_state`` (0.855 against 0.64 .. 0.81) rank every absent part
    above the present ones.
    """
    pairs = _pairs([(INTACT, 0.9, [0.9 - 0.01 * k, 0.0, 0.1 + 0.01 * k, 0.0]) for k in range(20)]
                   + [(ABSENT, 0.9, [0.95, 0.0, 0.05, 0.0]) for _ in range(10)])
    not_absent = 1 - pairs["state_probs"][:, ABSENT]
    pairs["vote"] = np.r_[not_absent[:20], np.full(10, (0.9 * 0.95 + 0.8 * 0.05) / 1.7)]
    return pairs


def test_calibration_chooses_the_vote_when_the_top_detection_lies_off_the_mount():
    point, figures = choose_operating_point(off_mount_case(), present_recall=0.95)
    candidates = point.chosen_on["presence_candidates"]
    assert candidates["state"]["hallucination_rate"] == 1.0
    assert candidates["score_x_state"]["hallucination_rate"] == 1.0
    assert candidates["vote"]["hallucination_rate"] == 0.0
    assert point.presence == "vote" and figures["hallucination_rate"] == 0.0
    # Pairs without the votes (e.g. built by hand) leave the vote out of the candidates.
    no_votes = {k: v for k, v in off_mount_case().items() if k != "vote"}
    point, _ = choose_operating_point(no_votes)
    assert set(point.chosen_on["presence_candidates"]) == {"score_x_state", "state"}


def test_thresholds_file_versions(tmp_path):
    point, _ = choose_operating_point(mount_scoring_case())
    path = tmp_path / "thresholds.json"
    point.save(str(path))
    data = json.loads(path.read_text())
    assert data["version"] == 2 and data["presence"] == "state"
    assert load_operating_point(str(path)) == point
    # A version-1 file (written before the presence rule existed) means score x (1 - P(absent)).
    path.write_text(json.dumps({"version": 1, "score_thresh": 0.3, "presence_thresh": 0.2,
                                "state_bias": {"damaged": 0.5}}))
    old = load_operating_point(str(path))
    assert old.presence == "score_x_state" and old.state_bias[DAMAGED] == 0.5


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"version": 9, "score_thresh": 0.5}', "version 9 is not supported"),
    ('{"version": 1}', "not a valid thresholds file"),
    ('{"version": 1, "score_thresh": 1.5}', "must be in [0, 1]"),
    ('{"version": 1, "score_thresh": 0.5, "state_bias": {"rusty": 1}}', "state_bias"),
    ('{"version": 2, "score_thresh": 0.5, "presence": "vibes"}', "presence rule"),
    ('{"version": true, "score_thresh": 0.5}', "version True is not supported"),
    ('{"version": 2, "score_thresh": true}', "score_thresh must be a number"),
    ('{"version": 2, "score_thresh": 0.5, "presence_thresh": "0.3"}',
     "presence_thresh must be a number"),
    ('{"version": 2, "score_thresh": 0.5, "state_bias": {"damaged": "1"}}', "state_bias"),
])
def test_bad_thresholds_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "thresholds.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_operating_point(str(path))
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_each_candidate_records_the_present_recall_it_reaches():
    """Two of the 20 present parts have no detection (P(present) 0): 95 % is out of reach
    without calling every undetected part present, so each rule stops at the lowest positive
    P(present) and records the 18 / 20 it keeps there."""
    pairs = constructed_case()
    pairs["score"][[3, 8]] = 0.0
    pairs["p_present"][[3, 8]] = 0.0
    point, _ = choose_operating_point(pairs, present_recall=0.95)
    for rule, candidate in point.chosen_on["presence_candidates"].items():
        assert candidate["present_recall"] == pytest.approx(18 / 20), rule
    point, _ = choose_operating_point(constructed_case(), present_recall=0.95)
    assert point.chosen_on["presence_candidates"]["score_x_state"]["present_recall"] == \
        pytest.approx(19 / 20)
