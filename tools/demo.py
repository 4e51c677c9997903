#!/usr/bin/env python
"""The main job on the embedded default data, end to end (what `make demo` runs).

1. generate SynthBikes in DelftBikes format: train, val and a held-out set, each from its own
   seed (so no image is shared), in the style of ``--synth-style`` (v1 or v2); the training
   split with the state shares of ``--train-state-probs`` (more damaged parts than DelftBikes
   has), val and the held-out set with DelftBikes' shares;
2. train the small CPU config from scratch with tools/train_net.py, the DelftBikes files given
   through the data environment variables (TRAIN_JSON, VAL_JSON, TRAIN_CLEANED, VAL_CLEANED,
   OUTPUT_DIR), so they are converted to OUTPUT_DIR/train_coco.json and val_coco.json; after
   the last iteration the state head alone trains on the detector's own boxes of the training
   images (``SOLVER.STATE_REFINE``, about a minute on 2 cores);
3. evaluate on val at the end of training (COCO mAP, state and verification metrics; the
   evaluator's files, confusion matrices, curves and per-part table under train/inference),
   then choose the verdict rule's operating point on val (train/thresholds.json);
4. run tools/predict.py on the held-out images (with that operating point);
5. print the headline table and where the pictures, the inspection report and the training
   outputs are. ``--record`` also appends the figures to benchmarks/results/demo.jsonl, from
   which ``benchmarks/make_results.py`` regenerates the README's demo table.

Every step is one of the project's own tools run as a user would run it.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import bikestate  # noqa: F401  first: quiets library deprecation notices
from detectron2.evaluation.testing import flatten_results_dict
from tabulate import tabulate

from bikestate.checkpoint.training_folder import training_folder_weights
from bikestate.verdict import OperatingPoint, thresholds_path

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)

# Detection metrics shown at the end, before the verification table.
DETECTION_METRICS = ("bbox/AP", "bbox/AP50", "bbox_present/AP", "bbox_state/AP50")
# Recorded with --record: the evaluator's figures that the README's demo table shows.
RECORDED_PREFIXES = ("bbox/AP", "bbox_present/AP", "bbox_state/", "verify/", "verify_loc/",
                     "state_gt/", "state/macro_f1")


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
    parser.add_argument("--synth-style", default="v2", choices=("v1", "v2"),
                        help="SynthBikes pictures: v2 photo-like (default), v1 flat drawings")
    parser.add_argument("--train-state-probs", default="0.5,0.16,0.2,0.14",
                        help="shares of intact, damaged, absent, occluded parts in the training "
                             "split (default: %(default)s; val keeps DelftBikes' "
                             "0.6,0.06,0.2,0.14)")
    parser.add_argument("--record", action="store_true",
                        help="append the figures to benchmarks/results/demo.jsonl (developers)")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="extra config options for training, as KEY VALUE pairs")
    args = parser.parse_args()
    from bikestate.synth import check_state_probs, state_probs_label
    from bikestate.utils.errors import ConfigError

    try:
        train_probs = check_state_probs(args.train_state_probs.split(","))
    except ConfigError as e:
        parser.error(f"--train-state-probs: {e}")

    opts = list(args.opts)
    if "MODEL.DEVICE" not in opts[::2]:
        # The demo runs where it is: on the GPU when there is one, else on the CPU (said once
        # here instead of a warning from each step).
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"demo: running on the {'GPU' if device == 'cuda' else 'CPU (no CUDA GPU)'}")
        opts += ["MODEL.DEVICE", device]

    out = os.path.abspath(args.output)
    # One folder per style and generator version: a rerun with another style, or after the
    # generator changed its pictures, never reuses these.
    from bikestate.synth import SYNTH_VERSIONS

    synth_version = SYNTH_VERSIONS[args.synth_style]
    data = os.path.join(out, f"synthbikes_{args.synth_style}_gen{synth_version}")
    train_dir = os.path.join(out, "train")
    predict_dir = os.path.join(out, "predictions")
    py = sys.executable
    timings = {}
    start = time.time()

    # The training split's folder names its shares: a rerun with other shares never reuses it.
    train_split = f"train_{state_probs_label(train_probs)}"
    splits = ((train_split, args.num_train, 1, train_probs), ("val", args.num_val, 2, None),
              ("heldout", args.num_heldout, 3, None))
    for split, num, seed, probs in splits:
        if os.path.exists(os.path.join(data, split, "annotations.json")):
            print(f"SynthBikes {split}: reusing {os.path.join(data, split)}")
            continue
        shares = [] if probs is None else ["--state-probs", ",".join(f"{p:g}" for p in probs)]
        timings[f"generate {split.split('_')[0]}"] = run(
            f"generate SynthBikes {split}",
            [py, os.path.join(TOOLS, "make_synthetic.py"), "--out", os.path.join(data, split),
             "--num-images", str(num), "--seed", str(seed), "--image-size", args.image_size,
             "--style", args.synth_style, *shares])

    # The data environment variables: the same route a user takes with their own .env file.
    env = dict(os.environ, TRAIN_JSON=os.path.join(data, train_split, "annotations.json"),
               TRAIN_CLEANED=os.path.join(data, train_split, "images"),
               VAL_JSON=os.path.join(data, "val", "annotations.json"),
               VAL_CLEANED=os.path.join(data, "val", "images"), OUTPUT_DIR=train_dir)
    env.setdefault("WANDB_MODE", "offline")
    timings["train"] = run("train (small CPU config, from scratch)",
                           [py, os.path.join(TOOLS, "train_net.py"), "--config-file",
                            args.config_file, *opts], env=env)

    # The config evaluates once, at the end of training (TEST.EVAL_PERIOD = MAX_ITER): that
    # evaluation scores the final weights, which are therefore also model_best.pth.
    weights = training_folder_weights(train_dir)
    if weights is None:
        print(f"demo: error: training left no weights in {train_dir}", file=sys.stderr)
        sys.exit(1)
    eval_dir = os.path.join(train_dir, "inference")

    timings["predict"] = run("predict on held-out photos",
                             [py, os.path.join(TOOLS, "predict.py"), "--config-file",
                              args.config_file, "--input",
                              os.path.join(data, "heldout", "images"), "--output", predict_dir,
                              *opts, "MODEL.WEIGHTS", weights])

    # Written by BikeStateEvaluator (nested by task, as detectron2 returns results).
    results_file = os.path.join(eval_dir, "bikestate_metrics.json")
    total = time.time() - start
    results = {}
    if os.path.exists(results_file):
        from bikestate.evaluation import verification_table

        with open(results_file, encoding="utf-8") as f:
            results = flatten_results_dict(json.load(f))
        # An undefined figure (nothing to count) is NaN, stored as null in the JSON file.
        rows = [(k, "n/a" if results[k] is None else f"{results[k]:.2f}")
                for k in DETECTION_METRICS if k in results]
        print("\nValidation metrics (SynthBikes val) of model_best.pth, default operating point "
              "(AP in %):")
        print(tabulate(rows, headers=["detection", "value"], tablefmt="github"))
        print()
        print(verification_table({k: (float("nan") if v is None else v)
                                  for k, v in results.items()}))
    calibrated = {}
    thresholds = thresholds_path(weights)
    if os.path.exists(thresholds):
        point = OperatingPoint.load(thresholds)
        calibrated = dict(point.chosen_on["figures"], presence=point.presence)
        fig = {k: "n/a" if v is None else f"{v:.3f}" for k, v in calibrated.items()
               if not isinstance(v, str)}
        print(f"\nOperating point chosen on val (train/thresholds.json): presence rule "
              f"{point.presence}, threshold {point.presence_thresh:.3f}, state biases "
              f"{point.describe()['state_bias']}; on val "
              f"itself: present recall {fig['present_recall']} / hallucination "
              f"{fig['hallucination_rate']}, damage precision {fig['damage_precision']} / "
              f"recall {fig['damage_recall']}, verdict macro-F1 {fig['macro_f1']}")
    print("\nTime per step: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) +
          f"; total {total / 60:.1f} min")
    if args.record:
        sys.path.insert(0, REPO)
        from benchmarks.common import append_record

        append_record("demo", {
            "config": os.path.relpath(args.config_file, REPO),
            "opts": list(args.opts), "train_images": args.num_train,
            "val_images": args.num_val, "image_size": args.image_size,
            "synth_style": args.synth_style, "synth_version": synth_version,
            "train_state_probs": list(train_probs),
            "metrics": {k: v for k, v in results.items() if k.startswith(RECORDED_PREFIXES)},
            "calibrated": calibrated, "timings_s": timings, "total_min": total / 60})
        print("Recorded in benchmarks/results/demo.jsonl; run benchmarks/make_results.py")
    print(f"\nPictures with predictions: {os.path.join(predict_dir, 'vis')}")
    print(f"Inspection report:         {os.path.join(predict_dir, 'report.csv')} (and .json)")
    print(f"Training outputs:          {train_dir} (metrics.json, model_best.pth, wandb/)")
    print(f"Evaluation files:          {eval_dir}")


if __name__ == "__main__":
    main()
