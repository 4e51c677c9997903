"""Verification metrics: hand-computed cases, the figures that cannot be gamed, scikit-learn
agreement, and the report and the evaluator giving the same verdicts."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve as sk_roc_curve

from bikestate.evaluation import verification as V
from bikestate.inference import build_report
from bikestate.verdict import NOT_FOUND_ID, OperatingPoint, verdict_name

from eval_cases import ABSENT, BELL, BOX_A, CHAIN, DAMAGED, INTACT, PARTS, SADDLE, run_evaluator
from eval_cases import make_outputs


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_ap_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = 300
    # Rounded scores: many ties, as P(present) = 0 for every undetected part.
    scores = np.round(rng.random(n) * np.where(rng.random(n) < 0.3, 0, 1), 2)
    positive = rng.random(n) < 0.4 + 0.4 * scores
    assert V.roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores),
                                                        abs=1e-12)
    assert V.average_precision(scores, positive) == pytest.approx(
        average_precision_score(positive, scores), abs=1e-12)
    # FPR at 95 % TPR: the first ROC point of scikit-learn's full curve reaching it.
    fpr, tpr, _ = sk_roc_curve(positive, scores, drop_intermediate=False)
    assert V.rate_at_recall(scores, positive, 0.95)[0] == pytest.approx(
        fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_rate_at_recall_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positive = np.array([True, False, True, True, False, True])
    # Keeping 3 of 4 positives needs threshold 0.6: one negative (0.8) of two is above it.
    assert V.rate_at_recall(scores, positive, 0.75) == (0.5, 0.6)
    assert V.rate_at_recall(scores, positive, 1.0) == (1.0, 0.4)


def _gt(image_id, parts):
    boxes, classes, states = zip(*parts)
    return {image_id: {"boxes": np.array(boxes, float), "classes": np.array(classes),
                       "states": np.array(states)}}


def _pred(dets, num_states=4):
    """dets: (part, box, score, state probabilities)."""
    return {"boxes": np.array([d[1] for d in dets], float).reshape(-1, 4),
            "scores": np.array([d[2] for d in dets], float),
            "classes": np.array([d[0] for d in dets], np.int64),
            "state_scores": np.array([d[3] for d in dets], float).reshape(-1, num_states)}


def test_intact_claim_off_the_absent_box_is_a_hallucination():
    """(c) The report shows an "intact" bell wherever its box is; the evaluator counts it."""
    gt = _gt(1, [([100, 100, 120, 120], BELL, ABSENT), ([10, 10, 50, 50], SADDLE, INTACT)])
    # IoU of [106, 100, 126, 120] with the absent bell's box: 14 x 20 / (2 x 400 - 280) = 0.54;
    # of [110, 100, 130, 120]: 10 x 20 / 600 = 0.33.
    pred = {1: _pred([(BELL, [110, 100, 130, 120], 0.9, [0.8, 0.1, 0.05, 0.05]),
                      (SADDLE, [10, 10, 50, 50], 0.9, [0.8, 0.1, 0.05, 0.05])])}
    pairs = V.verdict_pairs(pred, gt, len(PARTS), OperatingPoint())
    bell = pairs["part"] == BELL
    assert pairs["iou"][bell] == pytest.approx(1 / 3)
    assert pairs["verdict"][bell].tolist() == [INTACT]
    figures, _ = V.verification_metrics(pairs)
    assert figures["hallucination_rate"] == 1.0 and figures["present_recall"] == 1.0
    # Localized figures keep it a hallucination too: the user saw it.
    localized, _ = V.verification_metrics(V.localized(pairs))
    assert localized["hallucination_rate"] == 1.0


def test_localized_variant_needs_the_box_on_the_part():
    gt = _gt(1, [([10, 10, 50, 50], SADDLE, INTACT)])
    pred = {1: _pred([(SADDLE, [60, 60, 100, 100], 0.9, [0.8, 0.1, 0.05, 0.05])])}
    pairs = V.verdict_pairs(pred, gt, len(PARTS), OperatingPoint())
    assert V.verification_metrics(pairs)[0]["present_recall"] == 1.0
    assert V.verification_metrics(V.localized(pairs))[0]["present_recall"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_retrieval_ap_counts_unscored_positives_as_misses(seed):
    """Items scoring 0 are not ranked: with every item above 0 the AP is scikit-learn's;
    moving positives to 0 scales the curve's recall down, never earning chance precision."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(200), 2) + 0.01
    positive = rng.random(200) < 0.3
    assert V.retrieval_average_precision(scores, positive) == pytest.approx(
        average_precision_score(positive, scores), abs=1e-12)
    # Half the positives lose their score: the ranked half keeps its precision, recall halves.
    lost = positive & (np.cumsum(positive) % 2 == 0)
    kept = ~lost
    expected = average_precision_score(positive[kept], scores[kept]) * (
        positive[kept].sum() / positive.sum())
    assert V.retrieval_average_precision(np.where(lost, 0.0, scores), positive) == \
        pytest.approx(expected, abs=1e-12)
    assert V.retrieval_average_precision(np.zeros(200), positive) == 0.0
    assert np.isnan(V.retrieval_average_precision(scores, np.zeros(200, bool)))


def test_damaged_part_without_detection_is_a_miss_for_damage_ap():
    """A damaged part that no detection speaks for earns nothing: one of two, found first, gives
    AP 0.5 (a tie of zeros at the bottom of the ranking would give 0.5 + 0.5 x 2/3)."""
    gt = _gt(1, [([10, 10, 50, 50], SADDLE, DAMAGED), ([100, 100, 120, 120], BELL, DAMAGED),
                 ([130, 10, 150, 30], CHAIN, INTACT)])
    pred = {1: _pred([(SADDLE, [10, 10, 50, 50], 0.9, [0.1, 0.8, 0.05, 0.05]),
                      (CHAIN, [130, 10, 150, 30], 0.9, [0.9, 0.05, 0.03, 0.02])])}
    figures, _ = V.verification_metrics(V.verdict_pairs(pred, gt, len(PARTS), OperatingPoint()))
    assert figures["damage_ap"] == pytest.approx(0.5)
    figures, _ = V.verification_metrics(V.verdict_pairs({1: _pred([])}, gt, len(PARTS),
                                                        OperatingPoint()))
    assert figures["damage_ap"] == 0.0


def test_damaged_claim_over_an_absent_part_lowers_damage_precision():
    """(d) Every damaged claim counts, also one over a part that is not there."""
    gt = _gt(1, [([10, 10, 50, 50], SADDLE, DAMAGED), ([100, 100, 120, 120], BELL, ABSENT)])
    damaged = [0.1, 0.8, 0.05, 0.05]
    pred = {1: _pred([(SADDLE, [10, 10, 50, 50], 0.9, damaged),
                      (BELL, [100, 100, 120, 120], 0.7, damaged)])}
    figures, _ = V.verification_metrics(V.verdict_pairs(pred, gt, len(PARTS), OperatingPoint()))
    assert figures["damage_recall"] == 1.0
    assert figures["damage_precision"] == 0.5
    # Ranked by P(damaged): saddle 0.72 (+) then bell 0.56 (-): AP 1, the claim comes second.
    assert figures["damage_ap"] == 1.0


def test_several_boxes_of_one_part_take_the_most_urgent_state():
    gt = _gt(1, [([10, 10, 50, 50], BELL, INTACT), ([60, 10, 90, 50], BELL, DAMAGED),
                 ([100, 10, 120, 50], BELL, ABSENT)])
    pred = {1: _pred([(BELL, [60, 10, 90, 50], 0.9, [0.1, 0.8, 0.05, 0.05])])}
    pairs = V.verdict_pairs(pred, gt, len(PARTS), OperatingPoint())
    assert pairs["gt_state"].tolist() == [DAMAGED] and pairs["iou"].tolist() == [1.0]


def _random_case(seed, num_images=6):
    rng = np.random.default_rng(seed)
    gt, dets = [], {}
    for img in range(1, num_images + 1):
        dets[img] = []
        for part in range(len(PARTS)):
            x0, y0 = rng.uniform(0, 120, size=2)
            box = [float(x0), float(y0), float(x0 + 40), float(y0 + 30)]
            gt.append((img, part, box, int(rng.integers(4))))
            for _ in range(int(rng.integers(0, 3))):
                probs = rng.dirichlet(np.ones(4))
                dets[img].append((part, [float(v) for v in np.array(box) + rng.normal(0, 8, 4)],
                                  float(rng.uniform(0.05, 1)), int(probs.argmax()),
                                  probs.tolist()))
    return gt, dets


def test_halving_every_score_changes_no_threshold_free_figure(bike_dataset, model_output):
    """(a) A model that halves its scores keeps its AP50 and its threshold-free figures; its
    rates at the fixed 0.5 threshold move (that is why they never stand alone)."""
    gt, dets = _random_case(0)
    name = bike_dataset(PARTS, sorted(dets), gt)
    full = run_evaluator(name, dets, model_output)
    halved = run_evaluator(name, {i: [(d[0], d[1], d[2] / 2, *d[3:]) for d in v]
                                  for i, v in dets.items()}, model_output)
    for key in ("auroc_present", "halluc_at_95r", "halluc_at_90r", "damage_ap"):
        assert np.isfinite(full["verify"][key])
        assert halved["verify"][key] == pytest.approx(full["verify"][key], abs=1e-9), key
    assert halved["bbox"]["AP50"] == pytest.approx(full["bbox"]["AP50"])
    assert halved["verify"]["present_recall"] < full["verify"]["present_recall"]


def test_report_and_evaluator_give_the_same_verdicts(bike_dataset, model_output):
    """(e) Row by row, the evaluator scores exactly what the report shows."""
    gt, dets = _random_case(1)
    name = bike_dataset(PARTS, sorted(dets), gt)
    for point in (OperatingPoint(0.5), OperatingPoint(0.3, 0.4, (0.0, 0.7, 0.0, -0.3)),
                  OperatingPoint(0.2, 0.6, (0.0, 0.3, 0.0, 0.0), presence="state")):
        from bikestate.evaluation import BikeStateEvaluator

        evaluator = BikeStateEvaluator(name, distributed=False, operating_point=point)
        evaluator.reset()
        reports = {}
        for image_id in sorted(dets):
            inp, out = model_output(image_id, dets[image_id])
            evaluator.process([inp], [out])
            reports[image_id] = build_report(f"{image_id}.jpg", out["instances"], PARTS, point)
        evaluator.evaluate()
        pairs = evaluator.pairs
        assert len(pairs["verdict"]) == len(gt)
        for image_id, part, verdict in zip(pairs["image_id"], pairs["part"], pairs["verdict"]):
            shown = reports[int(image_id)]["parts"][int(part)]
            assert shown["verdict"] == verdict_name(verdict), (image_id, PARTS[part])
        assert len(set(pairs["verdict"].tolist())) >= 3  # the case exercises several verdicts


def test_predicting_nothing_scores_no_recall_and_chance_auroc():
    """(b) With every verdict not found."""
    gt = _gt(1, [([10, 10, 50, 50], SADDLE, INTACT), ([60, 60, 80, 80], BELL, ABSENT),
                 ([0, 100, 90, 130], CHAIN, DAMAGED)])
    figures, cm = V.verification_metrics(V.verdict_pairs({}, gt, len(PARTS), OperatingPoint()))
    assert figures["present_recall"] == 0.0 and figures["auroc_present"] == 0.5
    assert figures["hallucination_rate"] == 0.0 and figures["halluc_at_95r"] == 1.0
    assert cm[:, -1].sum() == 3  # all in the not-found column
    assert (V.verdict_pairs({}, gt, len(PARTS), OperatingPoint())["verdict"]
            == NOT_FOUND_ID).all()
