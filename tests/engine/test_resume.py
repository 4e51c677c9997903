"""--resume restores everything: stopping after N iterations and resuming to 2N reproduces the
uninterrupted 2N run (learning-rate history with plateau reductions, validation losses, best
value, weights)."""
import json
import os

import pytest
import torch

COMMON = [
    "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.004",
    "SOLVER.LR_SCHEDULER_NAME", "ReduceLROnPlateau",
    # patience 0 and a 50% relative threshold: every evaluation after the first halves the LR,
    # so the resumed run must restore the plateau state (best, counter, scale) to match
    "SOLVER.PLATEAU.PATIENCE", "0", "SOLVER.PLATEAU.THRESHOLD", "0.5",
    "TEST.EVAL_PERIOD", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "WANDB.MODE", "disabled",
    "TEST.EARLY_STOP_PATIENCE", "10",
]


def _evals(out):
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r["iteration"]: r for r in rows if "avg_val_loss" in r}


def test_stop_and_resume_equals_uninterrupted(tmp_path, train_net, make_args):
    full, split = tmp_path / "full", tmp_path / "split"
    refine = ("SOLVER.STATE_REFINE.EPOCHS", "2", "SOLVER.STATE_REFINE.GT_BOXES", "True")
    train_net.main(make_args(full, *COMMON, *refine, "SOLVER.MAX_ITER", "8"))
    # The first leg stands for a run killed at iteration 4: it ends without the state-head
    # refinement that follows a run's last iteration.
    train_net.main(make_args(split, *COMMON, "SOLVER.STATE_REFINE.EPOCHS", "0",
                             "SOLVER.MAX_ITER", "4"))
    assert not os.path.exists(split / "model_0000005.pth")
    train_net.main(make_args(split, *COMMON, *refine, "SOLVER.MAX_ITER", "8", resume=True))

    a, b = _evals(full), _evals(split)
    assert sorted(a) == sorted(b) == [1, 3, 5, 7]
    for it in a:
        assert b[it]["lr"] == pytest.approx(a[it]["lr"], rel=1e-9), it
        assert b[it]["avg_val_loss"] == pytest.approx(a[it]["avg_val_loss"], rel=1e-5), it
        assert b[it]["best/avg_val_loss"] == pytest.approx(a[it]["best/avg_val_loss"], rel=1e-5)
        assert b[it]["early_stop/num_bad_evals"] == a[it]["early_stop/num_bad_evals"]
    assert [a[it]["lr"] for it in sorted(a)] == pytest.approx([0.004, 0.002, 0.001, 0.0005])

    best_a = torch.load(full / "model_best.pth", weights_only=True)
    best_b = torch.load(split / "model_best.pth", weights_only=True)
    assert best_b["iteration"] == best_a["iteration"]
    assert best_b["best_value"] == pytest.approx(best_a["best_value"], rel=1e-5)
    final_a = torch.load(full / "model_final.pth", weights_only=True)
    final_b = torch.load(split / "model_final.pth", weights_only=True)
    for k, v in final_a["model"].items():
        torch.testing.assert_close(final_b["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    hooks_a, hooks_b = final_a["trainer"]["hooks"], final_b["trainer"]["hooks"]
    assert hooks_b["LRScheduler"]["scale"] == hooks_a["LRScheduler"]["scale"]
    assert hooks_b["BestCheckpointHook"]["best_iter"] == hooks_a["BestCheckpointHook"]["best_iter"]
    assert hooks_b["EarlyStopHook"]["num_bad_evals"] == hooks_a["EarlyStopHook"]["num_bad_evals"]


def test_resume_of_a_finished_run_does_nothing(tmp_path, train_net, make_args):
    out = tmp_path / "done"
    train_net.main(make_args(out, *COMMON, "SOLVER.MAX_ITER", "2"))
    before = os.path.getmtime(out / "model_final.pth")
    train_net.main(make_args(out, *COMMON, "SOLVER.MAX_ITER", "2", resume=True))
    assert os.path.getmtime(out / "model_final.pth") == before


def test_early_stopping_keeps_the_best_weights_and_stays_finished(tmp_path, train_net, make_args):
    out = tmp_path / "early"
    # "max" on a falling loss: every evaluation after the first is "no improvement"
    opts = ["SOLVER.MAX_ITER", "10", "TEST.EVAL_PERIOD", "1", "TEST.EARLY_STOP_PATIENCE", "2",
            "TEST.BEST_CHECKPOINT.MODE", "max", "SOLVER.CHECKPOINT_PERIOD", "100",
            "WANDB.MODE", "disabled", "SOLVER.BASE_LR", "0.004"]
    train_net.main(make_args(out, *opts))
    final = torch.load(out / "model_final.pth", weights_only=True)
    best = torch.load(out / "model_best.pth", weights_only=True)
    evals = _evals(out)
    stop = final["iteration"]
    assert stop < 9  # stopped early...
    # ...after 2 evaluations without a new maximum of avg_val_loss
    assert best["iteration"] == max((it for it in evals if it <= stop),
                                    key=lambda it: evals[it]["avg_val_loss"])
    assert stop - best["iteration"] == 2
    for k, v in best["model"].items():
        assert torch.equal(final["model"][k], v), k
    assert final["trainer"]["hooks"]["EarlyStopHook"]["stopped"]
    before = os.path.getmtime(out / "model_final.pth")
    train_net.main(make_args(out, *opts, resume=True))
    assert os.path.getmtime(out / "model_final.pth") == before


def test_early_stopping_refines_the_best_weights_it_ends_with(tmp_path, train_net, make_args):
    """The refinement hook runs after the last iteration, which an early stop never reaches:
    the best weights get their state head refined before they become model_final.pth, and
    model_best.pth holds the same refined weights."""
    out = tmp_path / "early_refined"
    opts = ["SOLVER.MAX_ITER", "10", "TEST.EVAL_PERIOD", "1", "TEST.EARLY_STOP_PATIENCE", "2",
            "TEST.BEST_CHECKPOINT.MODE", "max", "SOLVER.CHECKPOINT_PERIOD", "1",
            "SOLVER.MAX_TO_KEEP", "20", "WANDB.MODE", "disabled", "SOLVER.BASE_LR", "0.004",
            "SOLVER.STATE_REFINE.EPOCHS", "2", "SOLVER.STATE_REFINE.GT_BOXES", "True"]
    train_net.main(make_args(out, *opts))
    final = torch.load(out / "model_final.pth", weights_only=True)
    best = torch.load(out / "model_best.pth", weights_only=True)
    assert final["iteration"] < 9 and final["trainer"]["hooks"]["EarlyStopHook"]["stopped"]
    as_trained = torch.load(out / f"model_{best['iteration']:07d}.pth", weights_only=True)
    state_head = [k for k in best["model"] if k.startswith("roi_heads.state_head.")]
    for k, v in best["model"].items():
        assert torch.equal(final["model"][k], v), k
        assert torch.equal(as_trained["model"][k], v) or k in state_head, k
    assert any(not torch.equal(as_trained["model"][k], best["model"][k]) for k in state_head)
