"""Optimizers and schedules: AdamW/SGD with detectron2's per-parameter settings, the plateau
scheduler (unit and in a real run), SGD + warmup multi-step in a real run."""
import json
import math
import os

import pytest
import torch
from detectron2.config import get_cfg

from bikestate.config import add_bikestate_config
from bikestate.engine.solver import WarmupReduceLROnPlateau, build_lr_scheduler, build_optimizer
from bikestate.utils.errors import ConfigError


def _cfg(**solver):
    cfg = add_bikestate_config(get_cfg())
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


def _model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


def test_adamw_uses_seed_settings_and_per_parameter_weight_decay():
    cfg = _cfg(OPTIMIZER="AdamW", BASE_LR=1e-4, WEIGHT_DECAY=1e-4, WEIGHT_DECAY_NORM=0.0,
               BETAS=(0.8, 0.99))
    opt = build_optimizer(cfg, _model())
    assert isinstance(opt, torch.optim.AdamW)
    decays = sorted({g["weight_decay"] for g in opt.param_groups})
    assert decays == [0.0, 1e-4]  # GroupNorm parameters: WEIGHT_DECAY_NORM
    assert all(g["betas"] == (0.8, 0.99) and g["lr"] == 1e-4 for g in opt.param_groups)


def test_adamw_gradient_clipping_from_config():
    cfg = _cfg(OPTIMIZER="AdamW")
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    model = torch.nn.Linear(3, 1, bias=False)
    opt = build_optimizer(cfg, model)
    model.weight.grad = torch.full_like(model.weight, 100.0)
    opt.step()
    assert float(model.weight.grad.norm()) == pytest.approx(0.5, rel=1e-4)


def test_unknown_optimizer_and_scheduler_are_config_errors():
    with pytest.raises(ConfigError, match="SOLVER.OPTIMIZER 'Adam'"):
        build_optimizer(_cfg(OPTIMIZER="Adam"), _model())
    opt = build_optimizer(_cfg(), _model())
    with pytest.raises(ConfigError, match="LR_SCHEDULER_NAME"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="Plateau"), opt)


def test_plateau_halves_after_patience_and_resumes_from_state_dict():
    def make():
        opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        return opt, WarmupReduceLROnPlateau(opt, factor=0.5, patience=3, warmup_iters=0)

    opt, sched = make()
    lrs = []
    for value in [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]:
        sched.step()
        sched.report(value)
        lrs.append(opt.param_groups[0]["lr"])
    # best 1.0; 3 evaluations of patience, the 4th without improvement halves the LR
    assert lrs[:4] == [0.1] * 4
    assert lrs[4:9] == [0.05] * 5
    assert lrs[9] == 0.025
    # a fresh scheduler loaded from the state continues identically
    opt2, sched2 = make()
    sched2.load_state_dict(sched.state_dict())
    assert (sched2.best, sched2.num_bad_evals, sched2.scale) == (0.5, 0, 0.25)
    sched.step(); sched2.step()  # noqa: E702
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"] == 0.025


def test_plateau_composes_with_warmup_and_respects_min_lr():
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    sched = WarmupReduceLROnPlateau(opt, patience=0, min_lr=0.3, warmup_iters=4,
                                    warmup_factor=0.1, warmup_method="linear")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    for _ in range(4):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    for v in [1.0, 1.0, 1.0, 1.0]:
        sched.report(v)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3)  # 1 -> 0.5 -> 0.3 (floor)


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_plateau_in_training_halves_lr_when_val_loss_is_flat(tmp_path, train_net, make_args):
    """A relative threshold of 100% makes every evaluation count as "no improvement" (a flat
    validation loss); with patience 1, the second such evaluation halves the LR."""
    out = tmp_path / "plateau"
    args = make_args(out, "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.002",
                     "SOLVER.LR_SCHEDULER_NAME", "ReduceLROnPlateau",
                     "SOLVER.PLATEAU.PATIENCE", "1", "SOLVER.PLATEAU.THRESHOLD", "1.0",
                     "SOLVER.MAX_ITER", "6", "TEST.EVAL_PERIOD", "1",
                     "SOLVER.CHECKPOINT_PERIOD", "100", "WANDB.MODE", "disabled",
                     "TEST.VAL_LOSS", "True")
    train_net.main(args)
    rows = {r["iteration"]: r for r in _metrics(out)}
    bad = [rows[i]["plateau/num_bad_evals"] for i in range(6)]
    lrs = [rows[i]["lr"] for i in range(6)]
    # eval 0 sets the best; evals 1, 2 are bad: the 2nd exceeds patience 1 -> halve, reset
    assert bad == [0, 1, 0, 1, 0, 1]
    assert lrs == pytest.approx([0.002, 0.002, 0.001, 0.001, 0.0005, 0.0005])
    assert all(math.isfinite(rows[i]["avg_val_loss"]) for i in range(6))


def test_sgd_warmup_multistep_trains(tmp_path, train_net, make_args):
    out = tmp_path / "sgd"
    args = make_args(out, "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.005",
                     "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", "(3,)",
                     "SOLVER.GAMMA", "0.1", "SOLVER.WARMUP_ITERS", "2",
                     "SOLVER.MAX_ITER", "5", "TEST.EVAL_PERIOD", "0",
                     "SOLVER.CHECKPOINT_PERIOD", "100", "WANDB.MODE", "disabled",
                     "TEST.VAL_LOSS", "False")
    train_net.main(args)
    rows = _metrics(out)
    final = rows[-1]
    assert final["iteration"] == 4 and math.isfinite(final["total_loss"])
    assert final["lr"] == pytest.approx(0.0005)  # after step 3: BASE_LR x GAMMA
    assert "avg_val_loss" not in final and "bbox/AP" in final
    state = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert "momentum_buffer" in str(state["trainer"]["_trainer"]["optimizer"]["state"])


@pytest.mark.parametrize("optimizer", ["AdamW", "SGD"])
def test_state_head_lr_factor_scales_only_the_state_head(optimizer):
    """On the real small model: the state head's groups get STATE_HEAD_LR_FACTOR x the LR they
    would have (bias factor included), every other group keeps it, and the schedule keeps the
    ratio."""
    from bikestate import model_zoo
    from bikestate.engine import BikeStateTrainer

    cfg = model_zoo.get_config("bike_small_cpu.yaml")
    cfg.MODEL.DEVICE = "cpu"
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BIAS_LR_FACTOR = optimizer, 2.0
    model = BikeStateTrainer.build_model(cfg)
    names = {id(p): n for n, p in model.named_parameters()}

    def lrs(factor):
        cfg.SOLVER.STATE_HEAD_LR_FACTOR = factor
        opt = build_optimizer(cfg, model)
        scheduler = build_lr_scheduler(cfg, opt)
        for _ in range(3):
            opt.step()
            scheduler.step()
        # detectron2 merges groups of equal settings: one LR per parameter.
        return {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}

    plain, scaled = lrs(1.0), lrs(3.0)
    state = [n for n in plain if n.startswith("roi_heads.state_head.")]
    assert state and len(state) < len(plain) / 2
    for name, lr in plain.items():
        assert lr > 0
        expected = 3.0 * lr if name in state else lr
        assert scaled[name] == pytest.approx(expected, rel=1e-9), name
    with pytest.raises(ConfigError, match="STATE_HEAD_LR_FACTOR"):
        lrs(0.0)
