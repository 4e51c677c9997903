"""The state head of a trained model on three kinds of boxes: annotated, moved, detected.

The verdict of a part is judged on the detector's box (the highest-scoring detection of the
part), not on the annotated one. This benchmark measures what that costs: for every annotated
part of the validation set of a training folder (``--run``, e.g. ``output/demo/train``), the
state head classifies

* the annotated box (what ``state_gt/*`` of the evaluator scores),
* the annotated box with each side moved by a normal shift of ``--move`` times the box's size
  (``bikestate.modeling.roi_heads.jitter_boxes``, a fixed seed),
* the detector's box: the highest-scoring detection of that part, as the report takes it
  (parts without a detection are counted, and left out of the AUROCs).

For each kind: AUROC of P(absent) for absent vs every other state, AUROC of P(damaged) for
damaged vs the rest, and the median P(absent) of the absent parts; for the detector's boxes
also the share of absent and of present parts whose box overlaps the annotation (IoU >= 0.5).

    python benchmarks/bench_state_boxes.py --run output/demo/train
    python benchmarks/bench_state_boxes.py --run output/state_recipe/conv_image_b1_s42

Prints a table and appends a record to ``benchmarks/results/state_boxes.jsonl``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bikestate  # noqa: E402,F401  (its warning filters first)
from benchmarks.common import RESULTS_DIR, report  # noqa: E402

KINDS = ("annotated", "moved", "detected")


def measure(run, move, seed, num_images):
    import numpy as np
    import torch
    from tqdm import tqdm

    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, BoxMode, Instances, pairwise_iou

    from bikestate.checkpoint.training_folder import resolve_training_folder
    from bikestate.config import add_bikestate_config, merge_config_file
    from bikestate.constants import STATE_NAMES
    from bikestate.data import register_bike_datasets
    from bikestate.evaluation.verification import roc_auc
    from bikestate.inference.predictor import BikeStatePredictor
    from bikestate.modeling.roi_heads import given_box_features, jitter_boxes
    from bikestate.utils.errors import ConfigError
    from bikestate.utils.images import read_image
    from bikestate.verdict import OperatingPoint, part_verdicts

    try:  # the training folder's config.yaml and weights, as tools/serve.py finds them
        config_file, weights = resolve_training_folder(run)
    except ConfigError as e:
        raise SystemExit(f"bench_state_boxes.py: error: {e}") from e
    cfg = get_cfg()
    add_bikestate_config(cfg)
    merge_config_file(cfg, config_file)
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = "cpu"
    register_bike_datasets(cfg)
    dataset = cfg.DATASETS.TEST[0]
    dicts = DatasetCatalog.get(dataset)[:num_images or None]
    # The evaluator's detections: the training config's score threshold, not a calibrated one.
    predictor = BikeStatePredictor(cfg)
    model = predictor.model
    absent, damaged = STATE_NAMES.index("absent"), STATE_NAMES.index("damaged")
    generator = torch.Generator().manual_seed(seed)

    rows = {k: [] for k in KINDS}  # (gt state, P(state) (S,)) per annotated part
    overlap = []  # (gt state, IoU of the detector's box with the annotation)
    missing = 0
    for d in tqdm(dicts, desc=f"state on boxes ({dataset})", unit="img"):
        annos = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        if not annos:
            continue
        image = read_image(d["file_name"], format="BGR")
        inp = predictor._to_model_input(image)
        height, width = inp["image"].shape[-2:]
        scale = torch.tensor([width / d["width"], height / d["height"]] * 2)
        boxes = torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                              for a in annos], dtype=torch.float32)
        classes = torch.tensor([a["category_id"] for a in annos])
        states = np.array([a["state"] for a in annos])
        with torch.no_grad():
            det = model([inp])[0]["instances"].to("cpu")  # original pixels
            # The detection the report takes for each part: its highest-scoring one.
            speaker = torch.as_tensor(part_verdicts(
                det.scores.numpy(), det.pred_classes.numpy(), det.state_scores.numpy(),
                cfg.MODEL.ROI_HEADS.NUM_CLASSES, OperatingPoint())["detection"])[classes]
            found = speaker >= 0
            detected = torch.full((len(annos), 4), float("nan"))
            detected[found] = det.pred_boxes.tensor[speaker[found]]
            missing += int((~found).sum())
            iou = torch.zeros(len(annos))
            if found.any():
                iou[found] = pairwise_iou(Boxes(detected[found]), Boxes(boxes[found])).diag()
            overlap += list(zip(states[found.numpy()], iou[found].tolist()))
            given = {"annotated": boxes,
                     "moved": jitter_boxes(Boxes(boxes), move, generator=generator).tensor,
                     "detected": torch.where(found[:, None], detected, boxes)}
            features = given_box_features(model, model.preprocess_image([inp]))
            for kind, b in given.items():
                instances = Instances((height, width))
                instances.pred_boxes = Boxes(b * scale)
                instances.pred_classes = classes
                probs = model.roi_heads.forward_with_given_boxes(features, [instances])[0]
                probs = probs.state_scores.numpy()
                keep = found.numpy() if kind == "detected" else np.ones(len(annos), bool)
                rows[kind] += list(zip(states[keep], probs[keep]))

    figures = {"run": run, "weights": os.path.basename(cfg.MODEL.WEIGHTS), "dataset": dataset,
               "num_images": len(dicts), "move": move, "seed": seed,
               "parts_without_detection": missing}
    for kind, pairs in rows.items():
        gt = np.array([s for s, _ in pairs])
        probs = np.array([p for _, p in pairs]).reshape(len(gt), -1)
        figures[kind] = {
            "num_parts": int(len(gt)),
            "auroc_absent": roc_auc(probs[:, absent], gt == absent),
            "auroc_damaged": roc_auc(probs[:, damaged], gt == damaged),
            "median_p_absent_of_absent": float(np.median(probs[gt == absent, absent]))
            if (gt == absent).any() else None,
        }
    states = np.array([s for s, _ in overlap])
    ious = np.array([v for _, v in overlap])
    figures["detected"]["on_the_part_absent"] = float(np.mean(ious[states == absent] >= 0.5))
    figures["detected"]["on_the_part_present"] = float(np.mean(ious[states != absent] >= 0.5))
    return figures


def print_tables(figures):
    print(f"\n{figures['run']} ({figures['weights']}), {figures['num_images']} images of "
          f"{figures['dataset']}; moved boxes: {figures['move']} x size; parts without a "
          f"detection: {figures['parts_without_detection']}")
    print(f"{'boxes':10s} {'parts':>6s} {'AUROC absent':>13s} {'AUROC damaged':>14s} "
          f"{'median P(absent) of absent':>27s}")
    for kind in KINDS:
        f = figures[kind]
        print(f"{kind:10s} {f['num_parts']:6d} {f['auroc_absent']:13.3f} "
              f"{f['auroc_damaged']:14.3f} {f['median_p_absent_of_absent']:27.3f}")
    f = figures["detected"]
    print(f"detector's box on the part (IoU >= 0.5): absent parts {f['on_the_part_absent']:.2f}, "
          f"present parts {f['on_the_part_present']:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="training folder (config.yaml, weights)")
    parser.add_argument("--move", type=float, default=0.1,
                        help="std of each side's shift of the moved boxes, x the box's size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=0, help="0: the whole set")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    return report("state_boxes", measure(args.run, args.move, args.seed, args.num_images),
                  print_tables, args)


if __name__ == "__main__":
    main()
