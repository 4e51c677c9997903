"""tools/train_net.py as users run it: --eval-only, a non-finite loss, and 2 CPU processes."""
import json
import math
import os

import torch

from engine_helpers import SMALL_CONFIG, run_cli, tiny_opts
from wandb_files import offline_runs, read_run


def test_eval_only_prints_results(tmp_path, train_net, make_args, synth_dir):
    from bikestate.checkpoint import TrainingCheckpointer
    from bikestate.engine import BikeStateTrainer

    cfg = train_net.setup(make_args(tmp_path / "init"))
    model = BikeStateTrainer.build_model(cfg)
    TrainingCheckpointer(model, str(tmp_path)).save("model_init", tag_last=False)

    proc = run_cli("--config-file", SMALL_CONFIG, "--eval-only", *tiny_opts(synth_dir),
                   "OUTPUT_DIR", tmp_path / "eval", "MODEL.WEIGHTS", tmp_path / "model_init.pth")
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = proc.stdout.index("\n{") + 1
    results = json.loads(proc.stdout[start:proc.stdout.index("\n}", start) + 2])
    assert set(results) >= {"bbox", "state", "verify"}
    assert math.isfinite(results["bbox"]["AP"]) and results["verify"]["num_parts"] > 0


def test_non_finite_loss_stops_with_one_message(tmp_path, synth_dir):
    out = tmp_path / "nan"
    # A real cause: SGD at an absurd learning rate blows the weights up within a few steps.
    proc = run_cli("--config-file", SMALL_CONFIG, *tiny_opts(synth_dir), "OUTPUT_DIR", out,
                   "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "1e6",
                   "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.MAX_ITER", "20",
                   "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "0",
                   "SOLVER.MAX_TO_KEEP", "2")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    msg = errors[0]
    assert "non-finite" in msg and "at iteration" in msg and "last checkpoint is intact" in msg
    failed_iter = int(msg.split("at iteration ")[1].split(":")[0])
    assert failed_iter >= 1
    # the last good checkpoint is the one before the failing iteration, complete and finite
    with open(out / "last_checkpoint") as f:
        last = f.read().strip()
    assert last == f"model_{failed_iter - 1:07d}.pth"
    ckpt = torch.load(out / last, weights_only=True)
    assert ckpt["iteration"] == failed_iter - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (out / "model_final.pth").exists()
    # the W&B run is marked failed
    runs = offline_runs(str(out))
    assert len(runs) == 1 and read_run(runs[0])["exit_code"] == 1


def test_two_cpu_processes_train_evaluate_and_log_one_wandb_run(tmp_path, synth_dir):
    out = tmp_path / "ddp"
    proc = run_cli("--config-file", SMALL_CONFIG, "--num-gpus", "2", "--dist-url", "auto",
                   *tiny_opts(synth_dir), "OUTPUT_DIR", out, "SOLVER.MAX_ITER", "4",
                   "TEST.EVAL_PERIOD", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
                   "SOLVER.IMS_PER_BATCH", "2", "SOLVER.STATE_REFINE.EPOCHS", "2",
                   "SOLVER.STATE_REFINE.GT_BOXES", "True")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "World size: 2" in proc.stdout + proc.stderr or os.path.isfile(out / "log.txt.rank1")
    assert (out / "model_final.pth").is_file() and (out / "model_best.pth").is_file()
    runs = offline_runs(str(out))
    assert len(runs) == 1
    run = read_run(runs[0])
    assert run["exit_code"] == 0
    steps = {row["_step"]: row for row in run["history"]}
    assert all("train_loss" in steps[i] for i in range(4))
    evals = sorted(s for s, row in steps.items() if "avg_val_loss" in row)
    assert evals == [1, 3]
    assert all(math.isfinite(steps[s]["bbox"]["AP"] if isinstance(steps[s].get("bbox"), dict)
                             else steps[s]["bbox/AP"]) for s in evals)
    # The state head was refined after the last step on the boxes of both processes' shards:
    # all 8 training pictures' 22 annotated boxes.
    with open(out / "metrics.json") as f:
        last = [json.loads(line) for line in f][-1]
    assert last["iteration"] == 3
    assert last["state_refine/examples"] - last["state_refine/detections"] == 8 * 22


def test_two_processes_refine_when_one_has_no_image_to_refine_on(tmp_path, synth_dir):
    """SOLVER.STATE_REFINE.MAX_IMAGES 1: the second process's shard is empty; both decide on
    the union (the first's 22 annotated boxes) instead of one failing alone while the other
    waits for it."""
    out = tmp_path / "ddp_one_image"
    proc = run_cli("--config-file", SMALL_CONFIG, "--num-gpus", "2", "--dist-url", "auto",
                   *tiny_opts(synth_dir), "OUTPUT_DIR", out, "SOLVER.MAX_ITER", "2",
                   "TEST.EVAL_PERIOD", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
                   "SOLVER.IMS_PER_BATCH", "2", "SOLVER.STATE_REFINE.EPOCHS", "1",
                   "SOLVER.STATE_REFINE.GT_BOXES", "True", "SOLVER.STATE_REFINE.MAX_IMAGES", "1",
                   timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "metrics.json") as f:
        last = [json.loads(line) for line in f][-1]
    assert last["state_refine/examples"] - last["state_refine/detections"] == 22
