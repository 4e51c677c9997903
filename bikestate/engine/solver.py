"""Optimizers and learning-rate schedules of bikestate.

* ``SOLVER.OPTIMIZER``: ``"SGD"`` (detectron2's :func:`build_optimizer`) or ``"AdamW"`` (e.g.
  lr 1e-4, weight decay 1e-4), both with detectron2's per-parameter weight decay
  (``WEIGHT_DECAY_NORM``, ``WEIGHT_DECAY_BIAS``, ``BIAS_LR_FACTOR``), the state head's own
  learning-rate factor (``STATE_HEAD_LR_FACTOR``) and gradient clipping
  (``SOLVER.CLIP_GRADIENTS``).
* ``SOLVER.LR_SCHEDULER_NAME``: detectron2's ``WarmupMultiStepLR`` / ``WarmupCosineLR`` /
  ``WarmupStepWithFixedGammaLR``, or ``"ReduceLROnPlateau"`` (by default factor 0.5, patience 3
  evaluations), driven by the validation loss through :meth:`WarmupReduceLROnPlateau.report`.
"""
import logging
import math

import torch
from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.solver.lr_scheduler import LRScheduler, _get_warmup_factor_at_iter

from ..utils.errors import ConfigError

__all__ = ["build_optimizer", "build_lr_scheduler", "check_solver_config",
           "WarmupReduceLROnPlateau", "PLATEAU_NAME"]

logger = logging.getLogger(__name__)

PLATEAU_NAME = "ReduceLROnPlateau"
_OPTIMIZERS = ("SGD", "AdamW")
_D2_SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR")
# Parameter names of the state head (StateROIHeads.state_head), for STATE_HEAD_LR_FACTOR.
STATE_HEAD_PREFIX = "roi_heads.state_head."


def _param_groups(cfg, model):
    """detectron2's per-parameter groups, the state head's LR scaled by STATE_HEAD_LR_FACTOR."""
    factor, bias_factor = cfg.SOLVER.STATE_HEAD_LR_FACTOR, cfg.SOLVER.BIAS_LR_FACTOR
    lr_factor_func = None
    if factor != 1.0:
        # detectron2 applies BIAS_LR_FACTOR as an override that replaces the LR, which would
        # drop the state head's factor from its biases: both factors go through one function.
        def lr_factor_func(name):
            return (factor if name.startswith(STATE_HEAD_PREFIX) else 1.0) * \
                (bias_factor if name.endswith(".bias") else 1.0)

    return get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=bias_factor if lr_factor_func is None else 1.0,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        lr_factor_func=lr_factor_func,
    )


def check_solver_config(cfg):
    """One :class:`ConfigError` for an optimizer, LR schedule or LR factor the builders below
    would refuse: checked before training writes anything (a bad value found when the trainer
    is built would leave a config.yaml over a training folder's good one on ``--resume``)."""
    solver = cfg.SOLVER
    if solver.OPTIMIZER not in _OPTIMIZERS:
        raise ConfigError(f"SOLVER.OPTIMIZER {solver.OPTIMIZER!r} is unknown; choose one of "
                          f"{', '.join(_OPTIMIZERS)}")
    if solver.LR_SCHEDULER_NAME not in _D2_SCHEDULERS + (PLATEAU_NAME,):
        raise ConfigError(f"SOLVER.LR_SCHEDULER_NAME {solver.LR_SCHEDULER_NAME!r} is unknown; "
                          f"choose one of {', '.join(_D2_SCHEDULERS + (PLATEAU_NAME,))}")
    if not solver.STATE_HEAD_LR_FACTOR > 0:
        raise ConfigError(f"SOLVER.STATE_HEAD_LR_FACTOR must be > 0, got "
                          f"{solver.STATE_HEAD_LR_FACTOR}")
    if solver.LR_SCHEDULER_NAME == PLATEAU_NAME:
        from .hooks import check_metric_mode

        check_metric_mode(solver.PLATEAU.MODE, "SOLVER.PLATEAU.MODE")
        if not 0 < solver.PLATEAU.FACTOR < 1:
            raise ConfigError(f"SOLVER.PLATEAU.FACTOR must be in (0, 1), not "
                              f"{solver.PLATEAU.FACTOR}")


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Build the optimizer named by ``cfg.SOLVER.OPTIMIZER`` for the trainable parameters."""
    check_solver_config(cfg)
    if cfg.SOLVER.OPTIMIZER == "SGD":
        if cfg.SOLVER.STATE_HEAD_LR_FACTOR == 1.0:
            return d2_build_optimizer(cfg, model)
        # detectron2's SGD, with the groups detectron2's builder cannot scale per module.
        optimizer = torch.optim.SGD(
            _param_groups(cfg, model), lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV, weight_decay=cfg.SOLVER.WEIGHT_DECAY, foreach=True)
        return maybe_add_gradient_clipping(cfg, optimizer)
    # AdamW, the other optimizer check_solver_config lets through.
    optimizer = torch.optim.AdamW(
        _param_groups(cfg, model),
        lr=cfg.SOLVER.BASE_LR,
        betas=tuple(cfg.SOLVER.BETAS),
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        # One multi-tensor update instead of a Python loop over the parameters (as
        # detectron2's SGD): the same arithmetic, less overhead, also on the CPU.
        foreach=True,
    )
    return maybe_add_gradient_clipping(cfg, optimizer)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> LRScheduler:
    """Build the per-iteration LR scheduler named by ``cfg.SOLVER.LR_SCHEDULER_NAME``."""
    check_solver_config(cfg)
    if cfg.SOLVER.LR_SCHEDULER_NAME == PLATEAU_NAME:
        p = cfg.SOLVER.PLATEAU
        return WarmupReduceLROnPlateau(
            optimizer,
            mode=p.MODE,
            factor=p.FACTOR,
            patience=p.PATIENCE,
            threshold=p.THRESHOLD,
            min_lr=p.MIN_LR,
            warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
            warmup_iters=cfg.SOLVER.WARMUP_ITERS,
            warmup_method=cfg.SOLVER.WARMUP_METHOD,
        )
    return d2_build_lr_scheduler(cfg, optimizer)  # one of _D2_SCHEDULERS


class WarmupReduceLROnPlateau(LRScheduler):
    """``lr = base_lr x warmup(iter) x scale``, where ``scale`` halves (``factor``) after
    ``patience`` evaluations without improvement of the reported metric.

    It is stepped every iteration like detectron2's schedulers (by the ``LRScheduler`` hook,
    which also checkpoints its ``state_dict``), and :meth:`report` is called once per evaluation
    with the monitored value (by default ``avg_val_loss``). Unlike torch's ``ReduceLROnPlateau``
    it composes with warmup and keeps everything it needs to resume in ``state_dict()``:
    ``scale``, ``best``, ``num_bad_evals``, ``num_reductions``, ``last_epoch``.
    Improvement follows torch's ``threshold_mode="rel"``.
    """

    def __init__(
        self,
        optimizer,
        *,
        mode="min",
        factor=0.5,
        patience=3,
        threshold=1e-4,
        min_lr=0.0,
        warmup_factor=0.001,
        warmup_iters=0,
        warmup_method="linear",
        last_iter=-1,
    ):
        if mode not in ("min", "max"):
            raise ConfigError(f"SOLVER.PLATEAU.MODE must be 'min' or 'max', not {mode!r}")
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"SOLVER.PLATEAU.FACTOR must be in (0, 1), not {factor}")
        self.mode = mode
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.min_lr = float(min_lr)
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        self.scale = 1.0
        self.best = None
        self.num_bad_evals = 0
        self.num_reductions = 0
        super().__init__(optimizer, last_epoch=last_iter)

    def get_lr(self):
        warmup = _get_warmup_factor_at_iter(
            self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor
        )
        return [base_lr * warmup * self.scale for base_lr in self.base_lrs]

    def is_better(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best * (1.0 - self.threshold) if self.best > 0 else (
                value < self.best - abs(self.best) * self.threshold
            )
        return value > self.best * (1.0 + self.threshold) if self.best > 0 else (
            value > self.best + abs(self.best) * self.threshold
        )

    def report(self, value: float) -> bool:
        """Record one evaluation's metric; return True when this reduced the learning rate.

        A non-finite value counts as an evaluation without improvement.
        """
        value = float(value)
        if math.isfinite(value) and self.is_better(value):
            self.best = value
            self.num_bad_evals = 0
            return False
        self.num_bad_evals += 1
        if self.num_bad_evals <= self.patience:
            return False
        floor = self.min_lr / max(self.base_lrs) if max(self.base_lrs) > 0 else 0.0
        new_scale = max(self.scale * self.factor, floor)
        self.num_bad_evals = 0
        if new_scale >= self.scale:
            return False
        self.scale = new_scale
        self.num_reductions += 1
        # Apply now: the next iteration must already run at the reduced rate.
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs
        logger.info(
            "ReduceLROnPlateau: no improvement for %d evaluations (best %.6g); "
            "learning rate x%.3g -> %.6g", self.patience, self.best if self.best is not None
            else float("nan"), self.scale, max(lrs)
        )
        return True
