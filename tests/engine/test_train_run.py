"""A real training run of the small CPU model on a tiny SynthBikes set: outputs, metrics, and the
offline W&B run read back from its files."""
import json
import math
import os

import pytest
import torch

from bikestate.engine.wandb_writer import WANDB_KEYS
from wandb_files import offline_runs, read_run

SEED_WANDB_KEYS = sorted(WANDB_KEYS.values()) + ["avg_train_loss", "avg_val_loss"]


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def adamw_plateau_run(tmp_path_factory, train_net, synth_dir):
    """8 iterations, AdamW + ReduceLROnPlateau, evaluation every 4 iterations."""
    from engine_helpers import SMALL_CONFIG, tiny_opts
    from detectron2.engine import default_argument_parser

    out = tmp_path_factory.mktemp("adamw_plateau")
    args = default_argument_parser().parse_args([
        "--config-file", SMALL_CONFIG, *tiny_opts(synth_dir), "OUTPUT_DIR", str(out),
        "SOLVER.OPTIMIZER", "AdamW", "SOLVER.LR_SCHEDULER_NAME", "ReduceLROnPlateau",
        "SOLVER.MAX_ITER", "8", "TEST.EVAL_PERIOD", "4", "SOLVER.CHECKPOINT_PERIOD", "4",
        "SOLVER.MAX_TO_KEEP", "1",
    ])
    results = train_net.main(args)
    return {"dir": str(out), "results": results, "args": args}


def test_run_writes_checkpoints_and_metrics(adamw_plateau_run):
    out = adamw_plateau_run["dir"]
    for name in ("metrics.json", "model_best.pth", "model_final.pth", "last_checkpoint",
                 "config.yaml"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    # MAX_TO_KEEP 1: of the periodic checkpoints (iterations 3 and 7) only the newest is left.
    periodic = sorted(n for n in os.listdir(out) if n.startswith("model_0"))
    assert periodic == ["model_0000007.pth"]
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    rows = read_metrics(out)
    evals = [r for r in rows if "avg_val_loss" in r]
    assert [r["iteration"] for r in evals] == [3, 7]
    for r in evals:
        for key in ("avg_val_loss", "avg_train_loss", "val_loss_cls", "val_loss_box_reg",
                    "val_loss_rpn_cls", "val_loss_rpn_loc", "val_loss_state", "bbox/AP"):
            assert key in r and math.isfinite(r[key]), key
        parts = sum(r[k] for k in r if k.startswith("val_loss_"))
        assert r["avg_val_loss"] == pytest.approx(parts, rel=1e-6)
    # detectron2's JSONWriter writes when the writers run: here after each evaluation
    train_rows = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in train_rows] == [3, 7]
    assert all(math.isfinite(r["loss_state"]) for r in train_rows)

    # model_best.pth holds the weights of the lowest avg_val_loss (the seed's rule).
    best = torch.load(os.path.join(out, "model_best.pth"), weights_only=True)
    best_eval = min(evals, key=lambda r: r["avg_val_loss"])
    assert best["best_metric"] == "avg_val_loss"
    assert best["iteration"] == best_eval["iteration"]
    assert best["best_value"] == pytest.approx(best_eval["avg_val_loss"])
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["iteration"] == 7 and "optimizer" in final["trainer"]["_trainer"]
    # the training really changed the weights
    changed = [k for k in final["model"] if final["model"][k].dtype.is_floating_point
               and not torch.equal(final["model"][k], best["model"][k])]
    assert best["iteration"] == 7 or changed


def test_run_logs_seed_keys_to_offline_wandb(adamw_plateau_run):
    out = adamw_plateau_run["dir"]
    runs = offline_runs(out)
    assert len(runs) == 1
    run = read_run(runs[0])
    assert run["exit_code"] == 0
    logged = {}
    for row in run["history"]:
        for k, v in row.items():
            logged.setdefault(k, []).append((row.get("_step"), v))
    for key in SEED_WANDB_KEYS:
        assert key in logged, f"{key} missing from the W&B history"
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for _, v in logged[key]), key
    # per iteration for the training losses, per evaluation for the averages
    assert sorted(s for s, _ in logged["train_loss"]) == list(range(8))
    assert sorted(s for s, _ in logged["avg_val_loss"]) == [3, 7]
    assert "bbox/AP" in logged
    for key in ("verify/auroc_present", "verify/halluc_at_95r", "verify/present_recall",
                "state_gt/macro_f1"):
        assert sorted(s for s, _ in logged[key]) == [3, 7], key
    # the evaluation's figures, as images, at each evaluation
    for key in ("eval/verification_curves", "eval/verdict_confusion_matrix"):
        assert sorted(s for s, _ in logged[key]) == [3, 7], key
        assert all(v["_type"] == "image-file" for _, v in logged[key]), key
    # the validation images with predicted boxes, at each evaluation
    assert sorted(s for s, _ in logged["val_predictions"]) == [3, 7]
    assert all(v["_type"] == "images/separated" and v["count"] == 2
               for _, v in logged["val_predictions"])
    # boxes labelled by part and state: ground truth always, predictions as the model has them
    from bikestate.constants import PART_NAMES, STATE_NAMES

    boxes = logged["val_predictions"][-1][1]["all_boxes"][0]
    with open(os.path.join(runs[0], "files", boxes["ground_truth"]["path"])) as f:
        gt = json.load(f)
    captions = [b["box_caption"] for b in gt["box_data"]]
    assert captions and all(c.split(" · ")[0] in PART_NAMES and c.split(" · ")[1] in STATE_NAMES
                            for c in captions)
    with open(os.path.join(runs[0], "files", boxes["predictions"]["path"])) as f:
        pred = json.load(f)
    for b in pred["box_data"]:
        part, rest = b["box_caption"].split(" · ")
        assert part in PART_NAMES and rest.split(" ")[0] in STATE_NAMES
    # the full config
    assert run["config"]["SOLVER"]["OPTIMIZER"] == "AdamW"
    assert run["config"]["MODEL"]["ROI_HEADS"]["NAME"] == "StateROIHeads"


def test_training_ends_with_a_calibrated_operating_point(adamw_plateau_run):
    """thresholds.json beside model_best.pth, chosen on the validation set, with its curves."""
    from bikestate.verdict import OperatingPoint, load_operating_point

    out = adamw_plateau_run["dir"]
    point = load_operating_point("", os.path.join(out, "model_best.pth"))
    assert point.source == os.path.join(out, "thresholds.json")
    assert point.presence_thresh is not None
    assert point.chosen_on["dataset"] == "bike_val"
    assert point.chosen_on["present_recall_target"] == 0.95
    assert isinstance(point, OperatingPoint)
    assert os.path.isfile(os.path.join(out, "calibration_curves.png"))


def test_calibration_after_training_reuses_the_last_evaluation(adamw_plateau_run, tmp_path):
    """When model_best.pth holds the weights of the last evaluation, the calibration after
    training takes that evaluation's verdict pairs instead of running the model again, and
    chooses exactly what a fresh calibration of the same weights chooses."""
    from bikestate.checkpoint import BikeStateCheckpointer
    from bikestate.config import get_user_config
    from bikestate.data.datasets import register_bike_datasets
    from bikestate.engine import BikeStateTrainer, prepare_training_config
    from bikestate.verdict import OperatingPoint

    out = adamw_plateau_run["dir"]
    best = torch.load(os.path.join(out, "model_best.pth"), weights_only=True)["iteration"]
    with open(os.path.join(out, "log.txt")) as f:
        reused = "on the evaluation of iteration 7" in f.read()
    assert reused == (best == 7), best  # evaluations at iterations 3 and 7

    args = adamw_plateau_run["args"]
    cfg = get_user_config(args.config_file, args.opts)
    register_bike_datasets(cfg)
    prepare_training_config(cfg)
    model = BikeStateTrainer.build_model(cfg)
    BikeStateCheckpointer(model).load(os.path.join(out, "model_best.pth"))
    fresh = tmp_path / "thresholds.json"
    BikeStateTrainer.calibrate(cfg, model, str(fresh))
    assert OperatingPoint.load(str(fresh)) == \
        OperatingPoint.load(os.path.join(out, "thresholds.json"))


def test_train_result_is_the_evaluation(adamw_plateau_run):
    results = adamw_plateau_run["results"]
    assert "bbox" in results and math.isfinite(results["bbox"]["AP"])
