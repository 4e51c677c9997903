"""The pure metric functions on tiny arrays, values worked out by hand."""
import math

import numpy as np
import pytest

from bikestate.constants import STATE_NAMES
from bikestate.evaluation import coco_ap as AP
from bikestate.evaluation import matching as MT
from bikestate.evaluation import states as SM
from bikestate.utils.boxes import xyxy_to_xywh


def test_pairwise_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    iou = MT.pairwise_iou(a, b)
    # [0,0,10,10] vs [5,0,15,10]: intersection 50, union 150.
    np.testing.assert_allclose(iou, [[1 / 3, 0, 1], [0, 0, 0]])
    assert MT.pairwise_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_match_takes_best_score_first_and_leaves_duplicates():
    # Two ground-truth saddles; three detections: the best-scored one overlaps both.
    iou = np.array([
        [0.9, 0.6],   # det 0, score 0.5
        [0.8, 0.7],   # det 1, score 0.9: visited first, takes gt 0 (IoU 0.8 > 0.7)
        [0.95, 0.1],  # det 2, score 0.7: gt 0 taken, gt 1 IoU 0.1 < 0.5 -> unmatched
    ])
    match = MT.greedy_match(np.array([0.5, 0.9, 0.7]), iou, 0.5)
    # det 0 (last) gets gt 1 (0.6 >= 0.5).
    assert match.tolist() == [1, 0, -1]


def test_greedy_match_respects_parts():
    boxes = np.array([[0, 0, 10, 10]], dtype=float)
    iou = MT.same_class_iou(boxes, np.array([1]), boxes, np.array([2]))
    assert MT.greedy_match(np.array([0.9]), iou).tolist() == [-1]


def test_state_metrics_by_hand():
    gt = np.array([0, 0, 1, 2])
    pred = np.array([0, 1, 1, 1])
    res, cm = SM.state_metrics(gt, pred, STATE_NAMES)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert res["accuracy"] == pytest.approx(2 / 4)
    assert res["precision-damaged"] == pytest.approx(1 / 3)
    assert res["recall-intact"] == pytest.approx(1 / 2)
    assert res["precision-absent"] != res["precision-absent"]  # never predicted: NaN
    assert res["recall-absent"] == 0.0
    # F1: intact 2/(1+2), damaged 2/(3+1), absent 0/(0+1); occluded absent from both sides.
    assert math.isnan(res["f1-occluded"])
    assert res["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_coco_bbox_eval_accepts_no_detection():
    gts = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}]
    coco_eval = AP.coco_bbox_eval([1, 2], gts, [], [1, 2])
    ap = AP.standard_ap(coco_eval, ["a", "b"])
    assert ap["AP"] == 0.0 and ap["AP-a"] == 0.0
    assert math.isnan(ap["AP-b"])  # no ground truth of category 2


def test_bbox_state_ap50_wrong_state_misses():
    gt = {1: {"boxes": np.array([[0, 0, 10, 10]]), "classes": np.array([0]),
              "states": np.array([2])}}
    right = {1: {"boxes": np.array([[0, 0, 10, 10]]), "scores": np.array([0.9]),
                 "classes": np.array([0]), "states": np.array([2])}}
    wrong = {1: dict(right[1], states=np.array([0]))}
    assert AP.bbox_state_ap50([1], gt, right, 1, 4) == pytest.approx(100.0)
    assert AP.bbox_state_ap50([1], gt, wrong, 1, 4) == 0.0


def _random_case(seed, num_images=12, num_cats=5, max_gt=6, max_dets=15):
    rng = np.random.default_rng(seed)
    gts, preds = {}, {}
    for image_id in range(1, num_images + 1):
        m = int(rng.integers(0, max_gt + 1))
        xy = rng.uniform(0, 80, size=(m, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, size=(m, 2))], axis=1)
        if m >= 2:
            boxes[1] = boxes[0]  # duplicate ground truth: equal IoUs, pycocotools' tie rule
        gts[image_id] = {"boxes": boxes, "classes": rng.integers(num_cats - 1, size=m)}
        n = int(rng.integers(0, max_dets + 1))
        src = rng.integers(max(m, 1), size=n)
        dboxes = (boxes[src] if m else np.tile([[10.0, 10, 30, 30]], (n, 1)))
        dboxes = dboxes + rng.normal(0, 4, size=(n, 4))
        preds[image_id] = {
            "boxes": dboxes,
            "scores": np.round(rng.random(n), 1),  # many ties
            # The last category never has ground truth.
            "classes": np.where(rng.random(n) < 0.7, gts[image_id]["classes"][src] if m
                                else 0, rng.integers(num_cats, size=n)),
        }
    return gts, preds


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_dets", [100, 3])
def test_coco_ap_at_iou_equals_pycocotools(seed, max_dets):
    gts, preds = _random_case(seed)
    images = list(gts)
    ours = AP.coco_ap_at_iou(images, gts, preds, 0.5, max_dets)
    to_list = lambda d, score: [  # noqa: E731
        dict({"image_id": i, "category_id": int(c) + 1, "bbox": list(b)},
             **({"score": float(s)} if score else {}))
        for i in images for b, c, s in zip(xyxy_to_xywh(d[i]["boxes"]).tolist(),
                                           d[i]["classes"],
                                           d[i].get("scores", np.zeros(len(d[i]["classes"]))))
    ]
    ref = AP.coco_bbox_eval(images, to_list(gts, False), to_list(preds, True), range(1, 6),
                           iou_thrs=[0.5], standard=False, max_dets=max_dets)
    precision = ref.eval["precision"][0, :, :, 0, -1]  # (101, K)
    with_gt = [k for k in range(5) if (precision[:, k] > -1).all()]
    assert sorted(ours) == with_gt and 4 not in ours
    for k in with_gt:
        np.testing.assert_allclose(ours[k], precision[:, k], rtol=0, atol=1e-12)


def test_bbox_state_ap50_numpy_equals_pycocotools():
    gts, preds = _random_case(11, num_images=20, num_cats=3)
    rng = np.random.default_rng(3)
    for g in gts.values():
        g["states"] = rng.integers(4, size=len(g["classes"]))
    for p in preds.values():
        p["states"] = rng.integers(4, size=len(p["classes"]))
    fast = AP.bbox_state_ap50(list(gts), gts, preds, 3, 4)
    ref = AP.bbox_state_ap50(list(gts), gts, preds, 3, 4, implementation="pycocotools")
    assert 0 < ref < 100
    assert fast == pytest.approx(ref, abs=1e-9)
