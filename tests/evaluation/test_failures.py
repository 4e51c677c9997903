"""Failure kinds: every (ground truth, verdict) cell in exactly one kind, ranking, counts."""
import numpy as np
import pytest

from bikestate.evaluation import failures as F
from bikestate.evaluation import verification as V
from bikestate.verdict import OperatingPoint

INTACT, DAMAGED, ABSENT, OCCLUDED = range(4)
BOX = [10.0, 10.0, 50.0, 50.0]
FAR = [60.0, 60.0, 100.0, 100.0]  # IoU 0 with BOX
NOT_FOUND = "not found"


def _probs(state):
    return [0.7 if s == state else 0.1 for s in range(4)]


def _pairs(cases):
    """cases: (gt state, verdict state or NOT_FOUND, detection box); one image per case."""
    gts, preds = {}, {}
    for image_id, (gt, verdict, box) in enumerate(cases, start=1):
        gts[image_id] = {"boxes": np.array([BOX]), "classes": np.array([0]),
                         "states": np.array([gt])}
        if verdict == NOT_FOUND:  # a detection below the score threshold
            det = (0.3, _probs(INTACT))
        else:
            det = (0.9, _probs(verdict))
        preds[image_id] = {"boxes": np.array([box]), "scores": np.array([det[0]]),
                           "classes": np.array([0]), "state_scores": np.array([det[1]])}
    return V.verdict_pairs(preds, gts, 1, OperatingPoint())


# Every cell of the verdict confusion matrix, with the box on the part.
CELLS = [
    (INTACT, INTACT, None), (INTACT, DAMAGED, "false_alarm"),
    (INTACT, ABSENT, "called_absent"), (INTACT, OCCLUDED, "other_state"),
    (INTACT, NOT_FOUND, "not_found"),
    (DAMAGED, INTACT, "missed_damage"), (DAMAGED, DAMAGED, None),
    (DAMAGED, ABSENT, "called_absent"), (DAMAGED, OCCLUDED, "missed_damage"),
    (DAMAGED, NOT_FOUND, "not_found"),
    (ABSENT, INTACT, "hallucination"), (ABSENT, DAMAGED, "hallucination"),
    (ABSENT, ABSENT, None), (ABSENT, OCCLUDED, "occluded_absent"), (ABSENT, NOT_FOUND, None),
    (OCCLUDED, INTACT, "other_state"), (OCCLUDED, DAMAGED, "other_state"),
    (OCCLUDED, ABSENT, "occluded_absent"), (OCCLUDED, OCCLUDED, None),
    (OCCLUDED, NOT_FOUND, "not_found"),
]


def test_every_verdict_cell_has_one_kind():
    pairs = _pairs([(gt, verdict, BOX) for gt, verdict, _ in CELLS])
    kinds = F.classify_failures(pairs)
    assert [None if k < 0 else F.KIND_NAMES[k] for k in kinds] == [k for *_, k in CELLS]


@pytest.mark.parametrize("gt, verdict, expected", [
    (INTACT, INTACT, "mislocalized"),    # right state, box elsewhere
    (DAMAGED, INTACT, "mislocalized"),   # box elsewhere comes before the state kinds
    (OCCLUDED, OCCLUDED, "mislocalized"),
    (ABSENT, INTACT, "hallucination"),   # a claim on a missing part: wherever its box is
    (INTACT, ABSENT, "called_absent"),   # an absent verdict claims no box
])
def test_a_box_elsewhere(gt, verdict, expected):
    pairs = _pairs([(gt, verdict, FAR)])
    assert pairs["iou"][0] == 0.0
    assert F.KIND_NAMES[F.classify_failures(pairs)[0]] == expected


def test_ranking_counts_and_eligible():
    # Three hallucinations (P(present) 0.72, 0.45, 0.72: the tie goes to the earlier image),
    # one false alarm.
    gts = {i: {"boxes": np.array([BOX, FAR]), "classes": np.array([0, 1]),
               "states": np.array([ABSENT, INTACT])} for i in (1, 2, 3)}
    preds = {
        1: {"boxes": np.array([BOX, FAR]), "scores": np.array([0.8, 0.9]),
            "classes": np.array([0, 1]),
            "state_scores": np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]])},
        2: {"boxes": np.array([BOX]), "scores": np.array([0.5]), "classes": np.array([0]),
            "state_scores": np.array([[0.1, 0.7, 0.1, 0.1]])},
        3: {"boxes": np.array([BOX]), "scores": np.array([0.8]), "classes": np.array([0]),
            "state_scores": np.array([[0.7, 0.1, 0.1, 0.1]])},
    }
    pairs = V.verdict_pairs(preds, gts, 2, OperatingPoint())
    analysis = F.analyze_failures(pairs, ["bell", "saddle"], ground_truths=gts)
    halluc = analysis["cases"]["hallucination"]
    assert [(c["image_id"], c["rank"]) for c in halluc] == [(1, 1), (3, 2), (2, 3)]
    assert [c["rank_value"] for c in halluc] == pytest.approx([0.72, 0.72, 0.45])
    assert halluc[0]["gt_boxes"] == [BOX] and halluc[0]["box"] == BOX
    assert halluc[0]["p_state"]["intact"] == pytest.approx(0.8 * 0.7)
    # Saddle of images 2 and 3 has no detection: not found with best score 0.
    assert [c["image_id"] for c in analysis["cases"]["not_found"]] == [2, 3]
    assert [c["image_id"] for c in analysis["cases"]["false_alarm"]] == [1]
    matrix = np.array(analysis["counts"]["matrix"])
    assert matrix[:, F.KIND_NAMES.index("hallucination")].tolist() == [3, 0]
    assert matrix.sum() == analysis["num_failures"] == 6
    summary = {k["kind"]: k for k in analysis["kinds"]}
    assert summary["hallucination"]["eligible"] == 3 and summary["hallucination"]["rate"] == 1.0
    assert summary["false_alarm"]["top_parts"] == [{"part": "saddle", "count": 1, "share": 1.0}]
    assert summary["missed_damage"]["rate"] is None  # no damaged part could be missed


def test_no_pairs():
    pairs = V.verdict_pairs({}, {}, 3, OperatingPoint())
    analysis = F.analyze_failures(pairs, ["a", "b", "c"])
    assert analysis["num_failures"] == 0 and all(not c for c in analysis["cases"].values())
