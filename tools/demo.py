#!/usr/bin/env python
"""The main job on the embedded default data, end to end (what `make demo` runs).

1. generate SynthBikes in DelftBikes format: train, val and a held-out set, each from its own
   seed (so no image is shared);
2. train the small CPU config from scratch with tools/train_net.py, the DelftBikes files given
   through the seed's environment variables (TRAIN_JSON, VAL_JSON, TRAIN_CLEANED, VAL_CLEANED,
   OUTPUT_DIR), so they are converted to OUTPUT_DIR/train_coco.json and val_coco.json;
3. evaluate on val at the end of training (COCO mAP, state and verification metrics, printed
   as a table; the evaluator's files, confusion matrix and per-part table, under train/inference);
4. run tools/predict.py on the held-out images;
5. print where the pictures, the inspection report and the training outputs are.

Every step is one of the project's own tools run as a user would run it.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from detectron2.evaluation.testing import flatten_results_dict
from tabulate import tabulate

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)

# Metrics shown at the end, in this order (missing ones are left out).
HEADLINE_METRICS = (
    "bbox/AP", "bbox/AP50", "bbox_present/AP", "bbox_present/AP50", "bbox_state/AP50",
    "state/accuracy", "state/macro_f1", "verify/accuracy", "verify/missing_part_recall",
    "verify/hallucination_rate", "verify/damage_recall", "verify/damage_precision",
)


def run(step, cmd, env=None):
    print(f"\n=== {step}\n$ {' '.join(cmd)}", flush=True)
    start = time.time()
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        print(f"demo: error: step '{step}' failed with exit status {result.returncode}",
              file=sys.stderr)
        sys.exit(result.returncode)
    return time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/demo", help="folder for everything")
    parser.add_argument("--config-file", default=os.path.join(REPO, "configs",
                                                              "bike_small_cpu.yaml"))
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=60)
    parser.add_argument("--num-heldout", type=int, default=12)
    parser.add_argument("--image-size", default="640x480")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="extra config options for training, as KEY VALUE pairs")
    args = parser.parse_args()

    out = os.path.abspath(args.output)
    data = os.path.join(out, "synthbikes")
    train_dir = os.path.join(out, "train")
    predict_dir = os.path.join(out, "predictions")
    py = sys.executable
    timings = {}
    start = time.time()

    splits = (("train", args.num_train, 1), ("val", args.num_val, 2),
              ("heldout", args.num_heldout, 3))
    for split, num, seed in splits:
        if os.path.exists(os.path.join(data, split, "annotations.json")):
            print(f"SynthBikes {split}: reusing {os.path.join(data, split)}")
            continue
        timings[f"generate {split}"] = run(
            f"generate SynthBikes {split}",
            [py, os.path.join(TOOLS, "make_synthetic.py"), "--out", os.path.join(data, split),
             "--num-images", str(num), "--seed", str(seed), "--image-size", args.image_size])

    # The seed's environment variables: the same route a user takes with their own .env file.
    env = dict(os.environ, TRAIN_JSON=os.path.join(data, "train", "annotations.json"),
               TRAIN_CLEANED=os.path.join(data, "train", "images"),
               VAL_JSON=os.path.join(data, "val", "annotations.json"),
               VAL_CLEANED=os.path.join(data, "val", "images"), OUTPUT_DIR=train_dir)
    env.setdefault("WANDB_MODE", "offline")
    timings["train"] = run("train (small CPU config, from scratch)",
                           [py, os.path.join(TOOLS, "train_net.py"), "--config-file",
                            args.config_file, *args.opts], env=env)

    # The config evaluates once, at the end of training (TEST.EVAL_PERIOD = MAX_ITER): that
    # evaluation scores the final weights, which are therefore also model_best.pth.
    best = os.path.join(train_dir, "model_best.pth")
    weights = best if os.path.exists(best) else os.path.join(train_dir, "model_final.pth")
    eval_dir = os.path.join(train_dir, "inference")

    timings["predict"] = run("predict on held-out photos",
                             [py, os.path.join(TOOLS, "predict.py"), "--config-file",
                              args.config_file, "--input",
                              os.path.join(data, "heldout", "images"), "--output", predict_dir,
                              *args.opts, "MODEL.WEIGHTS", weights])

    # Written by BikeStateEvaluator (nested by task, as detectron2 returns results).
    results_file = os.path.join(eval_dir, "bikestate_metrics.json")
    if os.path.exists(results_file):
        with open(results_file, encoding="utf-8") as f:
            results = flatten_results_dict(json.load(f))
        # An undefined rate (nothing to count) is NaN, stored as null in the JSON file.
        rows = [(k, "n/a" if results[k] is None else f"{results[k]:.4f}")
                for k in HEADLINE_METRICS if k in results]
        print("\nValidation metrics (SynthBikes val) of model_best.pth (AP in %):")
        print(tabulate(rows, headers=["metric", "value"], tablefmt="github"))
    total = time.time() - start
    print("\nTime per step: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) +
          f"; total {total / 60:.1f} min")
    print(f"\nPictures with predictions: {os.path.join(predict_dir, 'vis')}")
    print(f"Inspection report:         {os.path.join(predict_dir, 'report.csv')} (and .json)")
    print(f"Training outputs:          {train_dir} (metrics.json, model_best.pth, wandb/)")
    print(f"Evaluation files:          {eval_dir}")


if __name__ == "__main__":
    main()
