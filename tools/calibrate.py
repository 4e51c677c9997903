#!/usr/bin/env python
"""Choose the verdict rule's operating point on validation data and save it beside the weights.

    tools/calibrate.py --config-file configs/bike_small_cpu.yaml [--dataset bike_val] \
        [--present-recall 0.95] [--objective macro_f1|damage_f1] [--output FILE] \
        MODEL.WEIGHTS output/model_best.pth [KEY VALUE ...]

Runs the model on the dataset (the config's DATASETS.TEST[0] by default, from the same data
sources training uses: config file, environment / .env, options; SynthBikes when nothing is
set), and chooses

* the presence rule and threshold: P(present) = score x (1 - P(absent)), 1 - P(absent), or
  the score-weighted mean of 1 - P(absent) over the part's detections,
  whichever reports fewer missing parts present at the highest threshold that still reports
  the given share of present parts as present (default 95 %); below it a part is "absent";
* the state biases: offsets of the log probabilities of damaged and occluded that maximize the
  verdict macro-F1 (or the damage F1) on the dataset.

Writes FILE (default: thresholds.json beside MODEL.WEIGHTS, where tools/predict.py, the
inspection report and ``train_net.py --eval-only`` find it) and, beside it,
calibration_curves.png (present-vs-absent ROC and per-state precision-recall curves). Training
does the same on its validation set at the end (TEST.BIKESTATE.CALIBRATION.AFTER_TRAINING).
Exit status: 0 done, 2 bad input (config, dataset, weights).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset_tool import dataset_tool_parser, run_dataset_tool  # noqa: E402  beside this file


def get_parser():
    parser = dataset_tool_parser(
        __doc__, "registered dataset to calibrate on (default: DATASETS.TEST[0])")
    parser.add_argument("--present-recall", type=float, default=None, metavar="R",
                        help="share of present parts kept present (default: the config's "
                             "TEST.BIKESTATE.CALIBRATION.PRESENT_RECALL, 0.95)")
    parser.add_argument("--objective", choices=("macro_f1", "damage_f1"), default=None,
                        help="what the state biases maximize (default: the config's, macro_f1)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="where to write thresholds.json (default: beside MODEL.WEIGHTS)")
    return parser


def _short_of_target(reached, chosen_on):
    """`` (at present recall R)`` when a rule could not reach the recall target, else ''."""
    target = chosen_on["present_recall_target"]
    return "" if reached is None or reached >= target else f" (at present recall {reached:.3f})"


def calibrate(args):
    import bikestate  # noqa: F401  first: quiets library deprecation notices
    import torch
    from tabulate import tabulate

    from bikestate.config import get_user_config
    from bikestate.data.datasets import register_dataset_to_evaluate
    from bikestate.engine import BikeStateTrainer
    from bikestate.evaluation.calibration import check_calibration_config
    from bikestate.checkpoint import load_model_weights
    from bikestate.utils.errors import ConfigError
    from bikestate.verdict import thresholds_path

    cfg = get_user_config(args.config_file, args.opts)
    if args.present_recall is not None:
        if not 0.0 < args.present_recall <= 1.0:
            raise ConfigError(f"--present-recall must be in (0, 1], got {args.present_recall}")
        cfg.TEST.BIKESTATE.CALIBRATION.PRESENT_RECALL = args.present_recall
    if args.objective is not None:
        cfg.TEST.BIKESTATE.CALIBRATION.OBJECTIVE = args.objective
    check_calibration_config(cfg)
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("MODEL.WEIGHTS is empty: give the weights to calibrate "
                          "(e.g. MODEL.WEIGHTS output/model_best.pth)")
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    dataset = register_dataset_to_evaluate(cfg, args.dataset)
    cfg.freeze()
    output = args.output or thresholds_path(cfg.MODEL.WEIGHTS)

    model = BikeStateTrainer.build_model(cfg)
    load_model_weights(model, cfg.MODEL.WEIGHTS, allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS)
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    point, figures = BikeStateTrainer.calibrate(cfg, model, output, dataset_name=dataset)

    candidates = point.chosen_on["presence_candidates"]
    rows = [*[(f"hallucination at the recall target, P(present) by {rule}",
               ("n/a" if v["hallucination_rate"] is None else f"{v['hallucination_rate']:.3f}")
               + _short_of_target(v.get("present_recall"), point.chosen_on))
              for rule, v in candidates.items()],
            ("presence rule (the one hallucinating less)", point.presence),
            ("presence threshold (P(present))", f"{point.presence_thresh:.4f}"),
            ("score threshold (not found below)", f"{point.score_thresh:.4f}"),
            *[(f"state bias {name}", f"{b:+.2f}") for name, b in
              point.describe()["state_bias"].items()],
            ("present recall / hallucination", f"{figures['present_recall']:.3f} / "
                                               f"{figures['hallucination_rate']:.3f}"),
            ("damage precision / recall", f"{figures['damage_precision']:.3f} / "
                                          f"{figures['damage_recall']:.3f}"),
            ("verdict macro-F1 / majority baseline", f"{figures['macro_f1']:.3f} / "
                                                     f"{figures['macro_f1_majority']:.3f}")]
    print(f"Operating point chosen on {dataset} ({int(figures['num_parts'])} image-part pairs):")
    print(tabulate(rows, headers=["", "value"], tablefmt="github"))
    print(f"Saved: {output}\nCurves: {os.path.join(out_dir, 'calibration_curves.png')}")
    return 0


def main(argv=None):
    run_dataset_tool(calibrate, get_parser().parse_args(argv), "calibrate.py")


if __name__ == "__main__":
    main(sys.argv[1:])
