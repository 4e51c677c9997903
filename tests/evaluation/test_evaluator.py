"""BikeStateEvaluator end to end: process() with real Instances, evaluate(), files, pycocotools."""
import contextlib
import csv
import io
import json
import math
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.testing import flatten_results_dict

from bikestate.config import add_bikestate_config
from bikestate.evaluation import BikeStateEvaluator
from bikestate.verdict import OperatingPoint

from eval_cases import (
    ABSENT, BOX_A, BOX_D, DETS, GT, INTACT, PARTS, SADDLE, run_evaluator,
)


def test_hand_built_case(bike_dataset, model_output, tmp_path):
    name = bike_dataset(PARTS, [1, 2, 3], GT)
    out_dir = str(tmp_path / "eval")
    results = run_evaluator(name, DETS, model_output, output_dir=out_dir)
    flat = flatten_results_dict(results)
    assert all(isinstance(v, float) for v in flat.values())

    # Matching (greedy by score, IoU >= 0.5, same part): p1-a, p3-b, p4-c, p5-d, p6-f; p2 is a
    # duplicate of a (a already taken by p1), p7 has no ground truth, e has no detection.
    # Pairs (gt, pred): a (I, I), b (A, D), c (D, O), d (D, D), f (A, A).
    state = results["state"]
    assert state["num_pairs"] == 5
    assert state["accuracy"] == pytest.approx(3 / 5)  # a, d, f right
    # Confusion (rows gt, cols pred): intact [1 0 0 0], damaged [0 1 0 1], absent [0 1 1 0].
    assert state["precision-intact"] == pytest.approx(1 / 1)
    assert state["precision-damaged"] == pytest.approx(1 / 2)  # predicted D: b, d
    assert state["precision-absent"] == pytest.approx(1 / 1)
    assert state["precision-occluded"] == pytest.approx(0 / 1)  # predicted O: c
    assert state["recall-intact"] == pytest.approx(1 / 1)
    assert state["recall-damaged"] == pytest.approx(1 / 2)  # gt D: c, d
    assert state["recall-absent"] == pytest.approx(1 / 2)  # gt A: b, f
    assert math.isnan(state["recall-occluded"])  # no matched occluded ground truth
    # F1 = 2 TP / (#pred + #gt): intact 2/2, damaged 2/4, absent 2/3, occluded 0/1.
    assert state["f1-intact"] == pytest.approx(1.0)
    assert state["f1-damaged"] == pytest.approx(0.5)
    assert state["f1-absent"] == pytest.approx(2 / 3)
    assert state["f1-occluded"] == pytest.approx(0.0)
    assert state["macro_f1"] == pytest.approx((1 + 0.5 + 2 / 3 + 0) / 4)
    assert state["accuracy-saddle"] == pytest.approx(2 / 2)  # a, d
    assert state["accuracy-bell"] == pytest.approx(0 / 1)  # b
    assert state["accuracy-chain"] == pytest.approx(1 / 2)  # c wrong, f right

    # Verdicts per (image, part) with ground truth (the report's rule: the best detection of
    # the part anywhere, score >= 0.5): img 1 saddle intact (p1 beats p2), bell damaged (p3),
    # chain occluded (p4); img 2 saddle damaged (p5), bell not found, chain not found (p6 is
    # 0.3). Image 3 has no ground truth: not scored.
    # P(present) = score x (1 - P(absent)): present pairs a 0.81, c 0.63, d 0.855, e 0;
    # absent pairs b 0.72, f 0.3 x 0.3 = 0.09.
    verify = results["verify"]
    assert verify["num_parts"] == 6
    assert verify["auroc_present"] == pytest.approx(5 / 8)  # a>b, a>f, c>f, d>b, d>f
    assert verify["halluc_at_95r"] == 1.0  # keeping e (P 0) keeps everything
    assert verify["present_recall"] == pytest.approx(3 / 4)  # a, c, d; e not found
    assert verify["hallucination_rate"] == pytest.approx(1 / 2)  # b
    assert verify["not_found_rate"] == pytest.approx(1 / 4)  # e
    # P(damaged) = score x p(damaged): d 0.665 (+), b 0.56, a 0.09, c 0.07 (+), f 0.03, e 0.
    assert verify["damage_ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 4)
    assert verify["damage_recall"] == pytest.approx(1 / 2)  # damaged c, d: d
    assert verify["damage_precision"] == pytest.approx(1 / 2)  # said damaged b, d: d
    # F1 intact 1, damaged 0.5, absent 0 (never said), occluded 0 (c said, e missed).
    assert verify["macro_f1"] == pytest.approx((1 + 0.5) / 4)
    assert verify["macro_f1_majority"] == pytest.approx(2 * 2 / (6 + 2) / 4)
    assert results["verify_loc"]["present_recall"] == pytest.approx(3 / 4)  # exact boxes

    # bbox_state/AP50: (part, state) categories with ground truth: saddle-I (p1 TP: AP 1),
    # bell-A (no detection: 0), chain-D (0), saddle-D (p5 TP then p2 FP: 1), bell-O (0),
    # chain-A (p6 TP: 1) -> 3 / 6.
    assert results["bbox_state"]["AP50"] == pytest.approx(50.0)

    # bbox (all parts), 101-point AP equal at every IoU (exact boxes): saddle 1 (p5, p1 TP,
    # p2 FP last); bell: p3 TP (b) then p7 FP, recall 1/2 -> precision 1 on the 51 recall
    # thresholds 0..0.5, 0 on the other 50 -> 51/101; chain: p4, p6 TP -> 1.
    assert results["bbox"]["AP"] == pytest.approx(100 * (1 + 51 / 101 + 1) / 3, abs=1e-6)
    assert results["bbox"]["AP-bell"] == pytest.approx(100 * 51 / 101, abs=1e-6)
    # bbox_present (a, c, d, e only): saddle 1, bell 0 (p3 and p7 are FPs, e missed), chain 1
    # (p4 TP; p6 on absent f is a FP with a lower score).
    assert results["bbox_present"]["AP"] == pytest.approx(100 * 2 / 3, abs=1e-6)
    assert results["bbox_present"]["AP-bell"] == pytest.approx(0.0)

    # Files.
    with open(os.path.join(out_dir, "coco_instances_results_with_states.json")) as f:
        dumped = json.load(f)
    assert len(dumped) == 7
    first = dumped[0]
    assert set(first) >= {"image_id", "category_id", "bbox", "score", "state", "state_scores"}
    assert first["category_id"] == SADDLE + 1 and first["bbox"] == [10.0, 10.0, 40.0, 40.0]
    with open(os.path.join(out_dir, "state_confusion_matrix.json")) as f:
        cm = json.load(f)
    assert cm["matrix"] == [[1, 0, 0, 0], [0, 1, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0]]
    with open(os.path.join(out_dir, "verdict_confusion_matrix.json")) as f:
        verdict_cm = json.load(f)
    assert verdict_cm["columns"] == ["intact", "damaged", "absent", "occluded", "not_found"]
    assert verdict_cm["matrix"] == [[1, 0, 0, 0, 0], [0, 1, 0, 1, 0],
                                    [0, 1, 0, 0, 1], [0, 0, 0, 0, 1]]
    with open(os.path.join(out_dir, "per_part.csv")) as f:
        rows = {r["part"]: r for r in csv.DictReader(f)}
    assert list(rows) == PARTS
    assert float(rows["bell"]["hallucination_rate"]) == 1.0
    assert float(rows["chain"]["hallucination_rate"]) == 0.0
    assert int(rows["chain"]["n_pairs"]) == 2 and int(rows["chain"]["n_absent"]) == 1
    assert float(rows["saddle"]["present_recall"]) == 1.0
    assert math.isnan(float(rows["saddle"]["hallucination_rate"]))
    for png in ("state_confusion_matrix.png", "per_part_ap.png", "verdict_confusion_matrix.png",
                "verification_curves.png"):
        with open(os.path.join(out_dir, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out_dir, "bikestate_metrics.json")) as f:
        assert json.load(f)["verify"]["hallucination_rate"] == 0.5
    assert not [n for n in os.listdir(out_dir) if n.endswith(".tmp")]


def test_bbox_ap_equals_pycocotools(bike_dataset, model_output):
    """bbox/* is exactly what pycocotools gives on the same ground truth and detections."""
    rng = np.random.default_rng(0)
    images = list(range(1, 9))
    gt, dets = [], {}
    for img in images:
        dets[img] = []
        for part in range(3):
            x0, y0 = rng.uniform(0, 120, size=2)
            w, h = rng.uniform(8, 70, size=2)
            box = [float(x0), float(y0), float(x0 + w), float(y0 + h)]
            if img != 8:  # image 8: no annotation
                gt.append((img, part, box, int(rng.integers(4))))
            for _ in range(3):  # jittered detections, some right, some not
                jitter = rng.normal(0, 6, size=4)
                dets[img].append((int(rng.integers(3)) if rng.random() < 0.2 else part,
                                  [float(v) for v in np.array(box) + jitter],
                                  float(rng.random()), int(rng.integers(4))))
    dets[5] = []  # an image without detections
    name = bike_dataset(PARTS, images, gt)
    results = run_evaluator(name, dets, model_output)

    json_file = MetadataCatalog.get(name).json_file
    with open(json_file) as f:
        dataset = json.load(f)

    def pycocotools_stats(dataset, rescore):
        """pycocotools' summary of ``dets`` on ``dataset``; ``rescore`` multiplies each score
        by 1 - P(absent) (make_outputs puts 0.7 on the predicted state, 0.1 on the others)."""
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes([
                {"image_id": img, "category_id": d[0] + 1,
                 "score": d[2] * (1 - (0.7 if d[3] == ABSENT else 0.1)) if rescore else d[2],
                 "bbox": [d[1][0], d[1][1], d[1][2] - d[1][0], d[1][3] - d[1][1]]}
                for img in images for d in dets[img]
            ])
            coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return coco_eval.stats

    stats = pycocotools_stats(dataset, rescore=False)
    for k, key in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"]):
        expected = stats[k] * 100
        if stats[k] < 0:
            assert math.isnan(results["bbox"][key])
        else:
            assert results["bbox"][key] == pytest.approx(expected, abs=1e-4), key
    assert 0 < results["bbox"]["AP"] < 100  # a case that can fail either way

    # bbox_present (public protocol): absent ground truth removed, the detector's own scores;
    # bbox_present_rescored: the same, rescored.
    present = dict(dataset, annotations=[a for a in dataset["annotations"]
                                         if a["state"] != ABSENT])
    for task, rescore in (("bbox_present", False), ("bbox_present_rescored", True)):
        stats = pycocotools_stats(present, rescore)
        for k, key in enumerate(["AP", "AP50", "AP75"]):
            assert results[task][key] == pytest.approx(stats[k] * 100, abs=1e-4), (task, key)
        assert results[task]["AP"] != pytest.approx(results["bbox"]["AP"])
    assert results["bbox_present"]["AP"] != pytest.approx(results["bbox_present_rescored"]["AP"])


def test_perfect_prediction(bike_dataset, model_output):
    name = bike_dataset(PARTS, [1, 2, 3], GT)
    one_hot = lambda s: [0.97 if k == s else 0.01 for k in range(4)]  # noqa: E731
    dets = {img: [(part, box, 0.9, state, one_hot(state))
                  for (i, part, box, state) in GT if i == img] for img in (1, 2, 3)}
    results = run_evaluator(name, dets, model_output)
    assert results["bbox"]["AP"] == pytest.approx(100.0)
    # Rescored, absent parts' detections (not ground truth here) rank last.
    assert results["bbox_present_rescored"]["AP"] == pytest.approx(100.0)
    assert results["bbox_state"]["AP50"] == pytest.approx(100.0)
    assert results["state"]["accuracy"] == 1.0
    assert results["state"]["macro_f1"] == 1.0
    for key in ("auroc_present", "present_recall", "damage_ap", "damage_recall",
                "damage_precision", "macro_f1"):
        assert results["verify"][key] == 1.0, key
    for key in ("halluc_at_95r", "halluc_at_90r", "hallucination_rate", "not_found_rate"):
        assert results["verify"][key] == 0.0, key

    # The public protocol keeps the detector's own scores: the same-score detections of absent
    # parts (false positives there) interleave with the true ones: bell's absent b (image 1)
    # ranks before its occluded e (image 2) -> precision 1/2 at recall 1 -> AP 50; chain
    # ranks its damaged c (image 1) first -> AP 100. saddle 100 -> mean 250 / 3.
    assert results["bbox_present"]["AP"] == pytest.approx(250 / 3, abs=1e-6)


def test_empty_prediction(bike_dataset, model_output, tmp_path):
    name = bike_dataset(PARTS, [1, 2, 3], GT)
    results = run_evaluator(name, {1: [], 2: [], 3: []}, model_output,
                            output_dir=str(tmp_path / "empty"))
    flat = flatten_results_dict(results)
    assert all(isinstance(v, float) for v in flat.values())
    # Ground truth exists, nothing recalled: AP 0 (not NaN) everywhere with ground truth.
    assert results["bbox"]["AP"] == 0.0 and results["bbox"]["AP-bell"] == 0.0
    assert results["bbox_present"]["AP"] == 0.0
    assert results["bbox_state"]["AP50"] == 0.0
    # No matched pair: state metrics undefined.
    assert results["state"]["num_pairs"] == 0.0
    assert math.isnan(results["state"]["accuracy"]) and math.isnan(results["state"]["macro_f1"])
    # Finding nothing cannot look good: no present part recalled, chance-level AUROC, and
    # reaching 95 % present recall means calling everything present.
    verify = results["verify"]
    assert verify["present_recall"] == 0.0 and verify["not_found_rate"] == 1.0
    assert verify["hallucination_rate"] == 0.0  # only beside present recall 0
    assert verify["auroc_present"] == 0.5
    assert verify["halluc_at_95r"] == 1.0
    assert verify["damage_recall"] == 0.0
    assert math.isnan(verify["damage_precision"])  # no damaged verdict
    assert verify["damage_ap"] == 0.0  # nothing claimed damaged: every damaged part a miss
    assert verify["macro_f1"] == 0.0
    with open(tmp_path / "empty" / "coco_instances_results_with_states.json") as f:
        assert json.load(f) == []


def test_no_absent_ground_truth_gives_nan_rates(bike_dataset, model_output):
    name = bike_dataset(PARTS, [1], [(1, SADDLE, BOX_A, INTACT)])
    results = run_evaluator(name, {1: [(SADDLE, BOX_A, 0.9, INTACT)]}, model_output)
    assert math.isnan(results["verify"]["hallucination_rate"])
    assert math.isnan(results["verify"]["halluc_at_95r"])
    assert math.isnan(results["verify"]["auroc_present"])
    assert results["verify"]["present_recall"] == 1.0


def test_present_rescore(bike_dataset, model_output):
    """A confident "absent" detection of a missing part must not cost present-only AP."""
    # Image 1: intact saddle; image 2: absent saddle.
    name = bike_dataset(PARTS, [1, 2], [(1, SADDLE, BOX_A, INTACT), (2, SADDLE, BOX_D, ABSENT)])
    dets = {1: [(SADDLE, BOX_A, 0.8, INTACT, [0.9, 0.0, 0.1, 0.0])],
            2: [(SADDLE, BOX_D, 0.9, ABSENT, [0.05, 0.0, 0.95, 0.0])]}
    results = run_evaluator(name, dets, model_output)
    # Public protocol, plain scores: the false positive 0.9 ranks first: precision 1/2 at
    # recall 1 -> AP 50.
    assert results["bbox_present"]["AP"] == pytest.approx(50.0)
    # Rescored: 0.8 * 0.9 = 0.72 (TP) before 0.9 * 0.05 = 0.045 (FP) -> AP 100.
    assert results["bbox_present_rescored"]["AP"] == pytest.approx(100.0)
    # bbox (all parts) counts both as true positives either way.
    assert results["bbox"]["AP"] == pytest.approx(100.0)


def test_settings_from_cfg(bike_dataset):
    from detectron2.config import get_cfg

    cfg = add_bikestate_config(get_cfg())
    cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH = 0.25
    name = bike_dataset(PARTS, [1], [(1, SADDLE, BOX_A, INTACT)])
    evaluator = BikeStateEvaluator(name, cfg=cfg, distributed=False, match_iou=0.6)
    assert evaluator.operating_point == OperatingPoint(0.25)
    assert evaluator._match_iou == 0.6  # an explicit argument wins over the config


def test_dataset_without_states_is_a_clear_error(tmp_path, model_output):
    from detectron2.data.datasets import register_coco_instances

    from bikestate.utils.errors import DataError

    json_file = str(tmp_path / "plain.json")
    with open(json_file, "w") as f:
        json.dump({"images": [{"id": 1, "file_name": "a.jpg", "height": 200, "width": 200}],
                   "categories": [{"id": 1, "name": "saddle"}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                    "bbox": [1, 1, 20, 20], "area": 400}]}, f)
    register_coco_instances("eval_test_no_states", {}, json_file, str(tmp_path))
    try:
        evaluator = BikeStateEvaluator("eval_test_no_states", distributed=False)
        evaluator.reset()
        inp, out = model_output(1, [(0, [1, 1, 21, 21], 0.9, INTACT)])
        evaluator.process([inp], [out])
        with pytest.raises(DataError, match="no 'state'"):
            evaluator.evaluate()
    finally:
        DatasetCatalog.remove("eval_test_no_states")
        MetadataCatalog.remove("eval_test_no_states")


def test_dataset_from_dicts_without_json_file(bike_dataset, tmp_path):
    """A dataset registered from dicts (XYXY boxes, no COCO file) gives the same results."""
    from bikestate.constants import STATE_NAMES

    dicts = [{"image_id": img, "file_name": f"img{img}.jpg", "height": 200, "width": 200,
              "annotations": [{"bbox": box, "bbox_mode": 0, "category_id": part,  # XYXY_ABS
                               "state": state, "iscrowd": 0}
                              for (i, part, box, state) in GT if i == img]}
             for img in (1, 2, 3)]
    name = "eval_test_dicts"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=PARTS, state_classes=list(STATE_NAMES))
    try:
        from_dicts = run_evaluator(name, DETS, output_dir=str(tmp_path / "dicts"))
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    from_json = run_evaluator(bike_dataset(PARTS, [1, 2, 3], GT), DETS)
    assert flatten_results_dict(from_dicts).keys() == flatten_results_dict(from_json).keys()
    for key, value in flatten_results_dict(from_json).items():
        got = flatten_results_dict(from_dicts)[key]
        assert got == pytest.approx(value, nan_ok=True), key
