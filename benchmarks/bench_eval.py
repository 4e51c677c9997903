"""Speed of the state-aware metrics beyond COCO evaluation (issue 6: < 10 s on a 2-core CPU).

Synthetic arrays, no images: N images with 22 ground-truth parts (DelftBikes state shares) and
100 detections each (jittered copies of the parts with right/wrong parts and states, plus
random boxes). Times, each the median of ``--repeats`` runs:

* ``state_verify_s``: matching + state metrics + the verdict pairs of every (image, part) +
  verification metrics (plain and localized) + per-part table, what BikeStateEvaluator adds to
  COCO evaluation (target: < 10 s for 1,000 images);
* ``bbox_state_ap50_s``: pycocotools AP50 over (part, state) categories;
* ``bbox_present_s`` (``--with-coco``): the present-only COCO evaluation, for scale;
* ``evaluator_*_s`` (``--evaluator``): BikeStateEvaluator end to end on the same data
  (process() with real Instances, evaluate() with files, plots included), time per section;
  ``evaluator_beyond_coco_s`` = state + verify + bbox_state + files (the two present-only COCO
  evaluations, public and rescored, are ``evaluator_bbox_present_s``).

    python benchmarks/bench_eval.py [--images 1000] [--repeats 3] [--with-coco] [--evaluator]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import append_record, median_time  # noqa: E402
from bikestate.constants import PART_NAMES, STATE_NAMES  # noqa: E402
from bikestate.evaluation import coco_ap as AP  # noqa: E402
from bikestate.evaluation import matching as MT  # noqa: E402
from bikestate.evaluation import states as SM  # noqa: E402
from bikestate.evaluation import verification as V  # noqa: E402
from bikestate.utils.boxes import xyxy_to_xywh  # noqa: E402

STATE_SHARES = (0.605, 0.06, 0.195, 0.14)


def synthetic(num_images, num_dets=100, seed=0, size=(1067, 800)):
    """Ground truth and predictions dicts keyed by image id (module docstring)."""
    rng = np.random.default_rng(seed)
    width, height = size
    num_parts, num_states = len(PART_NAMES), len(STATE_NAMES)
    gts, preds = {}, {}
    for image_id in range(1, num_images + 1):
        wh = rng.uniform(0.02, 0.6, size=(num_parts, 2)) * [width, height]
        xy = rng.uniform(0, 1, size=(num_parts, 2)) * ([width, height] - wh)
        gt_boxes = np.concatenate([xy, xy + wh], axis=1)
        gt_states = rng.choice(num_states, size=num_parts, p=STATE_SHARES)
        gts[image_id] = {"image_id": image_id, "boxes": gt_boxes,
                         "classes": np.arange(num_parts), "states": gt_states}
        # 3 jittered detections per part (66), 34 random ones.
        src = np.repeat(np.arange(num_parts), 3)
        jitter = rng.normal(0, 0.08, size=(src.size, 4)) * np.tile(wh[src], 2)
        boxes = gt_boxes[src] + jitter
        classes = np.where(rng.random(src.size) < 0.9, src, rng.integers(num_parts, size=src.size))
        extra = num_dets - src.size
        wh2 = rng.uniform(0.02, 0.5, size=(extra, 2)) * [width, height]
        xy2 = rng.uniform(0, 1, size=(extra, 2)) * ([width, height] - wh2)
        boxes = np.concatenate([boxes, np.concatenate([xy2, xy2 + wh2], axis=1)])
        classes = np.concatenate([classes, rng.integers(num_parts, size=extra)])
        state_scores = rng.dirichlet(np.ones(num_states), size=num_dets).astype(np.float32)
        states = np.concatenate([
            np.where(rng.random(src.size) < 0.7, gt_states[src],
                     rng.integers(num_states, size=src.size)),
            rng.integers(num_states, size=extra),
        ])
        preds[image_id] = {"image_id": image_id, "boxes": boxes.astype(np.float32),
                           "scores": rng.random(num_dets).astype(np.float32),
                           "classes": classes.astype(np.int32), "states": states.astype(np.int32),
                           "state_scores": state_scores}
    return gts, preds


def state_and_verification(gts, preds):
    from bikestate.verdict import OperatingPoint

    matched = MT.match_pairs(preds, gts, MT.MATCH_IOU)
    state, _ = SM.state_metrics(matched["pair_gt_state"], matched["pair_pred_state"], STATE_NAMES,
                               matched["pair_part"], PART_NAMES)
    pairs = V.verdict_pairs(preds, gts, len(PART_NAMES), OperatingPoint(), STATE_NAMES)
    verify, _ = V.verification_metrics(pairs, STATE_NAMES)
    V.verification_metrics(V.localized(pairs, STATE_NAMES), STATE_NAMES)
    SM.per_part_state_accuracy(matched, PART_NAMES)
    V.per_part_verification(pairs, PART_NAMES, STATE_NAMES)
    return state, verify


def bbox_present(gts, preds):
    absent = STATE_NAMES.index("absent")
    anns, dets = [], []
    for image_id, gt in gts.items():
        for box, cls, state in zip(xyxy_to_xywh(gt["boxes"]).tolist(), gt["classes"].tolist(),
                                   gt["states"].tolist()):
            if state != absent:
                anns.append({"image_id": image_id, "category_id": cls + 1, "bbox": box})
        p = preds[image_id]
        scores = p["scores"] * (1 - p["state_scores"][:, absent])
        for box, cls, score in zip(xyxy_to_xywh(p["boxes"]).tolist(), p["classes"].tolist(),
                                   scores.tolist()):
            dets.append({"image_id": image_id, "category_id": cls + 1, "bbox": box, "score": score})
    return AP.standard_ap(AP.coco_bbox_eval(list(gts), anns, dets, range(1, len(PART_NAMES) + 1)))


def run_evaluator(gts, preds):
    """BikeStateEvaluator on the synthetic set registered as a COCO-with-states dataset."""
    import json
    import tempfile

    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json
    from detectron2.structures import Boxes, Instances

    from bikestate.evaluation import BikeStateEvaluator

    folder = tempfile.mkdtemp(prefix="bench_eval_")
    json_file = os.path.join(folder, "gt.json")
    anns = []
    for image_id, gt in gts.items():
        for box, cls, state in zip(xyxy_to_xywh(gt["boxes"]).tolist(), gt["classes"].tolist(),
                                   gt["states"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cls + 1,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0, "state": state})
    with open(json_file, "w") as f:
        json.dump({"images": [{"id": i, "file_name": f"{i}.jpg", "width": 1067, "height": 800}
                              for i in gts],
                   "categories": [{"id": k + 1, "name": n} for k, n in enumerate(PART_NAMES)],
                   "annotations": anns}, f)
    name = "bench_eval_synthetic"
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, folder, name,
                                                         extra_annotation_keys=["state"]))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=folder,
                                  state_classes=list(STATE_NAMES), evaluator_type="bikestate")
    evaluator = BikeStateEvaluator(name, distributed=False, output_dir=os.path.join(folder, "out"))
    evaluator.reset()
    start = time.perf_counter()
    for image_id, p in preds.items():
        inst = Instances((800, 1067))
        inst.pred_boxes = Boxes(torch.from_numpy(p["boxes"]))
        inst.scores = torch.from_numpy(p["scores"])
        inst.pred_classes = torch.from_numpy(p["classes"]).long()
        inst.pred_states = torch.from_numpy(p["states"]).long()
        inst.state_scores = torch.from_numpy(p["state_scores"])
        evaluator.process([{"image_id": image_id}], [{"instances": inst}])
    process_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluator.evaluate()
    timings = {f"evaluator_{k}_s": v for k, v in evaluator.timings.items()}
    timings["evaluator_process_s"] = process_s
    timings["evaluator_evaluate_s"] = time.perf_counter() - start
    return timings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-coco", action="store_true",
                        help="also time the present-only COCO evaluation (slow)")
    parser.add_argument("--evaluator", action="store_true",
                        help="also run BikeStateEvaluator end to end (slow: 2 COCO evaluations)")
    parser.add_argument("--no-record", action="store_true", help="do not append a record")
    args = parser.parse_args()

    start = time.perf_counter()
    gts, preds = synthetic(args.images)
    print(f"synthetic data: {args.images} images x 22 parts x 100 detections "
          f"({time.perf_counter() - start:.1f} s)")
    state, verify = state_and_verification(gts, preds)
    print(f"  state/macro_f1 {state['macro_f1']:.3f}  matched {int(state['num_pairs'])}  "
          f"verify/auroc_present {verify['auroc_present']:.3f}  "
          f"present recall {verify['present_recall']:.3f} / hallucination "
          f"{verify['hallucination_rate']:.3f}")
    figures = {"images": args.images, "gt_per_image": len(PART_NAMES), "dets_per_image": 100,
               "repeats": args.repeats}
    figures["state_verify_s"] = median_time(lambda: state_and_verification(gts, preds),
                                            args.repeats, warmup=0)
    print(f"state + verification metrics: {figures['state_verify_s']:.2f} s (target < 10 s)")
    ap50 = []
    figures["bbox_state_ap50_s"] = median_time(
        lambda: ap50.append(AP.bbox_state_ap50(list(gts), gts, preds, len(PART_NAMES),
                                              len(STATE_NAMES))), 1, warmup=0)
    print(f"bbox_state/AP50 ({ap50[-1]:.2f}): {figures['bbox_state_ap50_s']:.2f} s")
    figures["state_verify_plus_bbox_state_s"] = (figures["state_verify_s"]
                                                 + figures["bbox_state_ap50_s"])
    if args.with_coco:
        ap = []
        figures["bbox_present_s"] = median_time(lambda: ap.append(bbox_present(gts, preds)), 1,
                                                warmup=0)
        print(f"bbox_present COCO eval (AP {ap[-1]['AP']:.2f}): {figures['bbox_present_s']:.2f} s")
    if args.evaluator:
        timings = run_evaluator(gts, preds)
        figures.update(timings)
        print("BikeStateEvaluator: " + ", ".join(f"{k[10:-2]} {v:.2f} s"
                                                 for k, v in timings.items()))
        beyond = (timings["evaluator_state_s"] + timings["evaluator_verify_s"]
                  + timings["evaluator_bbox_state_s"] + timings.get("evaluator_files_s", 0.0))
        figures["evaluator_beyond_coco_s"] = beyond
        print(f"  beyond the two COCO evaluations (state, verify, bbox_state, files): "
              f"{beyond:.2f} s")
    if not args.no_record:
        append_record("eval", figures)


if __name__ == "__main__":
    main()
