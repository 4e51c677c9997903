#!/usr/bin/env python
"""Failure analysis: the model's worst mistakes, part by part, on one HTML page.

    tools/analyze_errors.py --config-file configs/bike_small_cpu.yaml [--dataset bike_val] \
        --output DIR [--max-cases 12] [--iou 0.5] [--wandb] \
        MODEL.WEIGHTS output/demo/train/model_best.pth [KEY VALUE ...]
    tools/analyze_errors.py --config-file ... --from-eval output/demo/train/inference \
        --output DIR [MODEL.WEIGHTS ...]

Runs the model on the dataset (the config's DATASETS.TEST[0] by default, from the same data
sources training uses), or with --from-eval reads the detections an evaluation already saved
(EVAL_DIR/coco_instances_results_with_states.json, written by BikeStateEvaluator) without
running any model. Each image and part gets the verdict of the inspection report (the operating
point of thresholds.json beside MODEL.WEIGHTS, or TEST.BIKESTATE.THRESHOLDS_FILE, else the
default rule), scored against the ground truth as the evaluator scores it. Wrong verdicts are
sorted into kinds (each in exactly one):

  hallucination    absent part called intact or damaged             ranked by P(present)
  not_found        present part not found                           by the best score seen
  mislocalized     present part called present, box IoU < --iou     by confidence
  missed_damage    damaged part called intact or occluded           by confidence
  false_alarm      intact part called damaged                       by confidence
  occluded_absent  occluded called absent, or absent called occluded by confidence
  called_absent    intact or damaged part called absent             by confidence
  other_state      intact <-> occluded, occluded -> damaged          by confidence

Writes, each file atomically:
  DIR/failures.html        one self-contained page: summary, heat map, the --max-cases most
                           confident cases of each kind as crops with truth and verdict drawn;
  DIR/failures.json        the same for scripts (every failure, with the rule's numbers);
  DIR/failure_heatmap.png  failures per part (rows) and kind (columns);
  DIR/crops/               the crops shown on the page;
  DIR/evaluation/          (model runs only) the evaluator's files, for a later --from-eval.
With --wandb the cases are also logged to W&B as a table with images (WANDB.* settings; offline
without credentials). Exit status: 0 done, 2 bad input (config, dataset, weights, results file).
"""
import contextlib
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset_tool import dataset_tool_parser, run_dataset_tool  # noqa: E402  beside this file


def get_parser():
    parser = dataset_tool_parser(
        __doc__, "registered dataset to analyze (default: DATASETS.TEST[0])")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the page")
    parser.add_argument("--from-eval", default=None, metavar="EVAL_DIR",
                        help="read the detections of this evaluation folder instead of running "
                             "the model")
    parser.add_argument("--max-cases", type=int, default=12, metavar="N",
                        help="cases drawn per kind, most confident first (default 12)")
    parser.add_argument("--iou", type=float, default=None, metavar="T",
                        help="IoU below which a box is badly localized (default 0.5, as "
                             "verify_loc/*)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the cases to W&B as a table with images")
    return parser


def _run_model(cfg, dataset, point, eval_dir):
    """The model on every image of ``dataset`` through BikeStateEvaluator (which also writes
    its files to ``eval_dir``); returns the evaluator after evaluate()."""
    import torch
    from detectron2.evaluation.evaluator import inference_context
    from tqdm import tqdm

    from bikestate.engine import BikeStateTrainer
    from bikestate.evaluation import BikeStateEvaluator
    from bikestate.checkpoint import load_model_weights

    model = BikeStateTrainer.build_model(cfg)
    load_model_weights(model, cfg.MODEL.WEIGHTS, allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS)
    evaluator = BikeStateEvaluator(dataset, cfg=cfg, distributed=False, output_dir=eval_dir,
                                   operating_point=point)
    evaluator.reset()
    loader = BikeStateTrainer.build_test_loader(cfg, dataset)
    with inference_context(model), torch.no_grad():
        for inputs in tqdm(loader, total=len(loader), desc=f"predicting {dataset}", unit="img",
                           file=sys.stderr):
            evaluator.process(inputs, model(inputs))
    # COCOEvaluator's summary tables are about boxes, not this; keep them off the console.
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    return evaluator


def analyze(args):
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from tabulate import tabulate

    from bikestate.config import get_user_config
    from bikestate.constants import STATE_NAMES
    from bikestate.data.datasets import register_dataset_to_evaluate
    from bikestate.engine.wandb_writer import resolve_wandb_mode
    from bikestate.evaluation.evaluator import RESULTS_FILE, load_ground_truth, load_results
    from bikestate.evaluation.failure_page import log_failures_to_wandb, write_failure_page
    from bikestate.evaluation.failures import analyze_failures
    from bikestate.evaluation.verification import LOCALIZED_IOU, verdict_pairs
    from bikestate.utils.errors import ConfigError, DataError
    from bikestate.verdict import load_operating_point

    iou = LOCALIZED_IOU if args.iou is None else args.iou
    if not 0.0 < iou <= 1.0:
        raise ConfigError(f"--iou must be in (0, 1], got {args.iou}")
    if args.max_cases < 1:
        raise ConfigError(f"--max-cases must be at least 1, got {args.max_cases}")
    if args.from_eval is not None:
        if not os.path.exists(args.from_eval):
            raise DataError(f"{args.from_eval}: no such evaluation folder (--from-eval)")
        results_file = (os.path.join(args.from_eval, RESULTS_FILE)
                        if os.path.isdir(args.from_eval) else args.from_eval)
        if not os.path.isfile(results_file):
            raise DataError(f"{results_file}: no such file (--from-eval takes an evaluation "
                            f"folder with {RESULTS_FILE})")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise ConfigError(f"--output {args.output} exists and is not a folder")
    cfg = get_user_config(args.config_file, args.opts)
    if args.from_eval is None and not cfg.MODEL.WEIGHTS:
        raise ConfigError("MODEL.WEIGHTS is empty: give the weights to analyze (e.g. "
                          "MODEL.WEIGHTS output/model_best.pth), or --from-eval EVAL_DIR")
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    dataset = register_dataset_to_evaluate(cfg, args.dataset)
    cfg.freeze()
    metadata = MetadataCatalog.get(dataset)
    part_names = list(metadata.thing_classes)
    state_names = list(metadata.get("state_classes", STATE_NAMES))
    # The report's and the evaluator's operating point (thresholds.json beside the weights).
    point = load_operating_point(cfg.TEST.BIKESTATE.THRESHOLDS_FILE, cfg.MODEL.WEIGHTS,
                                 default_score_thresh=cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH)

    ground_truth = load_ground_truth(dataset)
    if args.from_eval is None:
        evaluator = _run_model(cfg, dataset, point, os.path.join(args.output, "evaluation"))
        pairs = evaluator.pairs
        source = cfg.MODEL.WEIGHTS
    else:
        predictions = load_results(results_file, dataset, len(state_names))
        pairs = verdict_pairs(predictions, ground_truth, len(part_names), point, state_names)
        source = f"detections of {results_file}"

    records = {int(r["image_id"]): r["file_name"] for r in DatasetCatalog.get(dataset)}
    root = metadata.get("image_root", "")
    names = {i: (os.path.relpath(p, root) if root and os.path.abspath(p).startswith(
        os.path.abspath(root) + os.sep) else os.path.basename(p)) for i, p in records.items()}
    analysis = analyze_failures(pairs, part_names, state_names, ground_truth, names, iou)
    meta = {"title": f"Failure analysis: {dataset}", "dataset": dataset, "weights": source,
            "rule": point.describe(state_names)}
    paths = write_failure_page(analysis, args.output, records, meta, max_cases=args.max_cases,
                               state_names=state_names)

    rows = [(k["kind"], k["count"], k["eligible"],
             "n/a" if k["rate"] is None else f"{k['rate']:.3f}",
             ", ".join(f"{t['part']} {t['count']}" for t in k["top_parts"]))
            for k in analysis["kinds"]]
    print(f"Failures on {dataset} ({analysis['num_images']} images, {analysis['num_pairs']} "
          f"image-part pairs, {analysis['num_failures']} wrong verdicts; rule from "
          f"{point.source}):")
    print(tabulate(rows, headers=["kind", "failures", "of", "rate", "parts with most"],
                   tablefmt="github"))
    print(f"Page: {paths['html']}\nJSON: {paths['json']}\nHeat map: {paths['heatmap']}")
    if args.wandb:
        where = log_failures_to_wandb(args.output, cfg.WANDB.PROJECT,
                                      resolve_wandb_mode(cfg.WANDB.MODE), cfg.WANDB.ENTITY,
                                      cfg.WANDB.NAME and f"{cfg.WANDB.NAME}-failures")
        if where:
            print(f"W&B: {where}")
    return 0


def main(argv=None):
    run_dataset_tool(analyze, get_parser().parse_args(argv), "analyze_errors.py")


if __name__ == "__main__":
    main(sys.argv[1:])
