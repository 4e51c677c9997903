"""Training hooks of bikestate: evaluation with validation loss, plateau LR, best checkpoint,
early stopping, W&B prediction images, and periodic checkpoints with retention.

Order matters and is set by :meth:`BikeStateTrainer.build_hooks`: :class:`BikeStateEvalHook`
runs the evaluation and the validation loss and puts every number into the ``EventStorage``
(identically on every process); :class:`PlateauLRHook`, :class:`BestCheckpointHook` and
:class:`EarlyStopHook` come after it and read from the storage only; the periodic checkpointer
comes after them, so a checkpoint always includes the decisions of its own iteration's
evaluation (that is what makes ``--resume`` reproduce an uninterrupted run).

Each stateful hook defines ``state_dict``/``load_state_dict``; detectron2's
``TrainerBase.state_dict`` stores them in every checkpoint under the hook's class name.
"""
import contextlib
import logging
import math
import os
import re
from collections import defaultdict

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import detectron2.utils.comm as comm
from detectron2.engine import hooks as d2_hooks
from detectron2.engine.hooks import HookBase
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import EventStorage

from .rng import preserve_rng_state

__all__ = [
    "is_eval_iteration",
    "loss_mode",
    "compute_validation_loss",
    "BikeStateEvalHook",
    "PlateauLRHook",
    "BestCheckpointHook",
    "EarlyStopHook",
    "WandbPredictionImagesHook",
    "PeriodicWriter",
    "RetainingPeriodicCheckpointer",
    "check_metric_mode",
]

logger = logging.getLogger(__name__)

# W&B / metrics.json names of the averaged validation and training losses.
AVG_VAL_LOSS = "avg_val_loss"
AVG_TRAIN_LOSS = "avg_train_loss"
VAL_LOSS_PREFIX = "val_"


def is_eval_iteration(iteration, max_iter, period):
    """Whether an evaluation runs after ``iteration`` (0-based): every ``period`` iterations
    and always after the last one."""
    return (period > 0 and (iteration + 1) % period == 0) or iteration + 1 >= max_iter


def unwrap_model(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def loss_mode(model):
    """Put ``model`` in training mode (detectron2 models return losses only then), except that
    BatchNorm and Dropout layers stay in inference mode: the validation loss must neither update
    BatchNorm running statistics nor be noisy from dropout. FrozenBatchNorm and GroupNorm behave
    the same in both modes. Restores every module's previous mode afterwards.
    """
    modes = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd)):
            m.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def compute_validation_loss(model, data_loader, seed=0):
    """Average loss of ``model`` over a data loader of annotated images, on every process.

    Args:
        model: a detectron2 model (DDP-wrapped or not); only the local module is run.
        data_loader: yields lists of mapped dataset dicts with ``instances`` (the train mapper
            without random augmentation), sharded across processes (``InferenceSampler``).
        seed: torch seed for proposal sampling, so the number does not vary between evaluations
            of the same weights.

    Returns:
        dict: ``avg_val_loss`` (mean over images of the summed loss terms) and
        ``val_<term>`` for each loss term (``val_loss_cls``, ``val_loss_state``, ...), averaged
        over all images of all processes.
    """
    module = unwrap_model(model)
    sums = defaultdict(float)
    num_images = 0
    # A scratch EventStorage: the model's training-mode statistics (rpn/num_pos_anchors,
    # fast_rcnn/cls_accuracy, ...) of validation images must not mix with the training ones.
    with preserve_rng_state(), torch.no_grad(), loss_mode(module), EventStorage():
        torch.manual_seed(seed)
        for batch in data_loader:
            loss_dict = module(batch)
            n = len(batch)
            total = 0.0
            for name, value in loss_dict.items():
                v = float(value.detach())
                sums[VAL_LOSS_PREFIX + name] += v * n
                total += v
            sums[AVG_VAL_LOSS] += total * n
            num_images += n
    gathered = comm.all_gather((dict(sums), num_images))
    total_images = sum(n for _, n in gathered)
    if total_images == 0:
        return {}
    merged = defaultdict(float)
    for part, _ in gathered:
        for k, v in part.items():
            merged[k] += v
    return {k: v / total_images for k, v in merged.items()}


class BikeStateEvalHook(HookBase):
    """Evaluate every ``eval_period`` iterations and after the last iteration.

    At each evaluation it runs ``eval_function`` (the dataset evaluator; results gathered to the
    main process) and ``val_loss_function`` (``avg_val_loss`` and components), adds
    ``avg_train_loss`` (mean ``total_loss`` since the previous evaluation), broadcasts the flat
    dict of numbers from the main process and puts it into every process's storage, so the
    hooks after it take identical decisions everywhere.
    """

    def __init__(self, eval_period, eval_function, val_loss_function=None):
        self._period = eval_period
        self._func = eval_function
        self._val_loss_func = val_loss_function
        self.last_eval_iter = -1
        self.last_results = None

    def after_step(self):
        if is_eval_iteration(self.trainer.iter, self.trainer.max_iter, self._period):
            self.evaluate()

    def evaluate(self):
        storage = self.trainer.storage
        with preserve_rng_state():
            results = self._func() if self._func is not None else {}
            val = self._val_loss_func() if self._val_loss_func is not None else {}
        flat = {}
        if results:
            for k, v in flatten_results_dict(results).items():
                try:
                    flat[k] = float(v)
                except (TypeError, ValueError) as e:
                    raise ValueError(
                        f"evaluation results must be a nested dict of numbers; got {k}={v!r}"
                    ) from e
        flat.update(val)
        if comm.is_main_process():
            train_losses = [
                v for v, it in storage.history("total_loss").values()
                if self.last_eval_iter < it <= self.trainer.iter
            ] if "total_loss" in storage.histories() else []
            if train_losses:
                flat[AVG_TRAIN_LOSS] = float(np.mean(train_losses))
        flat = comm.all_gather(flat)[0]  # the main process's numbers, everywhere
        if flat:
            storage.put_scalars(**flat, smoothing_hint=False)
        self.last_eval_iter = self.trainer.iter
        self.last_results = results
        if val:
            logger.info(
                "Iteration %d: %s", self.trainer.iter,
                ", ".join(f"{k}={v:.4f}" for k, v in sorted(flat.items())
                          if k in (AVG_TRAIN_LOSS,) or k.startswith(VAL_LOSS_PREFIX)
                          or k == AVG_VAL_LOSS),
            )
        comm.synchronize()

    def state_dict(self):
        return {"last_eval_iter": self.last_eval_iter}

    def load_state_dict(self, state):
        self.last_eval_iter = state["last_eval_iter"]


def _metric_at_this_iteration(trainer, metric):
    """The value of ``metric`` put into the storage during this iteration, else None."""
    entry = trainer.storage.latest().get(metric)
    if entry is None or entry[1] != trainer.iter:
        return None
    return float(entry[0])


class _MetricWatcher(HookBase):
    """Base of the hooks that act on one evaluation metric after the evaluation hook."""

    def __init__(self, metric, eval_period):
        self.metric = metric
        self._period = eval_period
        self._warned = False

    def _value(self):
        if not is_eval_iteration(self.trainer.iter, self.trainer.max_iter, self._period):
            return None
        value = _metric_at_this_iteration(self.trainer, self.metric)
        if value is None and not self._warned:
            self._warned = True
            available = sorted(k for k, (_, it) in self.trainer.storage.latest().items()
                               if it == self.trainer.iter)
            logger.warning(
                "%s: metric %r was not computed at this evaluation (available: %s); "
                "it is ignored", type(self).__name__, self.metric, ", ".join(available) or "none",
            )
        return value


def check_metric_mode(mode, key="mode"):
    """``mode`` if it is ``min`` or ``max`` (how a watched metric improves), else one
    :class:`ConfigError` naming ``key``."""
    if mode not in ("min", "max"):
        from ..utils.errors import ConfigError

        raise ConfigError(f"{key} must be 'min' or 'max', not {mode!r}")
    return mode


def _better(mode, value, best):
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


class PlateauLRHook(_MetricWatcher):
    """Report each evaluation's ``metric`` to the trainer's :class:`WarmupReduceLROnPlateau`.

    Its state (best, evaluations without improvement, LR scale) lives in the scheduler, which
    detectron2's ``LRScheduler`` hook checkpoints.
    """

    def after_step(self):
        value = self._value()
        if value is None:
            return
        reduced = self.trainer.scheduler.report(value)
        self.trainer.storage.put_scalar("plateau/num_bad_evals",
                                        self.trainer.scheduler.num_bad_evals, smoothing_hint=False)
        if reduced:
            self.trainer.storage.put_scalar("lr", self.trainer.optimizer.param_groups[0]["lr"],
                                            smoothing_hint=False)


class BestCheckpointHook(_MetricWatcher):
    """Keep ``model_best.pth``: the weights with the best ``metric`` so far (seed: lowest
    ``avg_val_loss``; ``mode="max"`` for metrics like ``bbox/AP``).

    The file holds the model weights plus ``iteration``, ``best_metric`` and ``best_value``; it
    does not move the ``last_checkpoint`` tag. Runs on every process (the best value decides
    early stopping); only the main process, which has a checkpointer, writes.
    """

    def __init__(self, metric, mode, eval_period, checkpointer=None, file_prefix="model_best"):
        super().__init__(metric, eval_period)
        self.mode = check_metric_mode(mode)
        self.checkpointer = checkpointer
        self.file_prefix = file_prefix
        self.best_value = None
        self.best_iter = None

    def after_step(self):
        value = self._value()
        if value is None:
            return
        if _better(self.mode, value, self.best_value):
            self.best_value, self.best_iter = value, self.trainer.iter
            if self.checkpointer is not None:
                self.checkpointer.save_weights_only(
                    self.file_prefix, iteration=self.trainer.iter, best_metric=self.metric,
                    best_value=value)
            logger.info("New best %s = %.6g at iteration %d", self.metric, value,
                        self.trainer.iter)
        self.trainer.storage.put_scalar(f"best/{self.metric}", self.best_value,
                                        smoothing_hint=False)

    def state_dict(self):
        return {"best_value": self.best_value, "best_iter": self.best_iter,
                "metric": self.metric}

    def load_state_dict(self, state):
        if state.get("metric", self.metric) != self.metric:
            logger.warning("The checkpoint tracked the best %r, this run tracks %r: starting "
                           "the best value afresh", state.get("metric"), self.metric)
            return
        self.best_value, self.best_iter = state["best_value"], state["best_iter"]


class EarlyStopHook(_MetricWatcher):
    """Stop training after ``patience`` evaluations without improvement of ``metric``.

    The trainer then loads ``model_best.pth`` so the best weights are the result.
    """

    def __init__(self, metric, mode, patience, eval_period):
        super().__init__(metric, eval_period)
        self.mode = check_metric_mode(mode)
        self.patience = int(patience)
        self.best_value = None
        self.num_bad_evals = 0
        self.stopped = False

    def after_step(self):
        value = self._value()
        if value is None:
            return
        if _better(self.mode, value, self.best_value):
            self.best_value, self.num_bad_evals = value, 0
        else:
            self.num_bad_evals += 1
        self.trainer.storage.put_scalar("early_stop/num_bad_evals", self.num_bad_evals,
                                        smoothing_hint=False)
        if self.num_bad_evals >= self.patience and self.trainer.iter + 1 < self.trainer.max_iter:
            self.stopped = True
            self.trainer.request_stop(
                f"early stopping: {self.metric} did not improve for {self.patience} evaluations "
                f"(best {self.best_value:.6g})")

    def state_dict(self):
        return {"best_value": self.best_value, "num_bad_evals": self.num_bad_evals,
                "stopped": self.stopped}

    def load_state_dict(self, state):
        self.best_value = state["best_value"]
        self.num_bad_evals = state["num_bad_evals"]
        self.stopped = state.get("stopped", False)


class PeriodicWriter(d2_hooks.PeriodicWriter):
    """detectron2's ``PeriodicWriter`` that also writes after every evaluation, so each
    evaluation's numbers reach ``metrics.json`` and TensorBoard (the writers only see the latest
    value of each key, and a later evaluation would replace an unwritten one)."""

    def __init__(self, writers, period=20, eval_period=0):
        super().__init__(writers, period=period)
        self._eval_period = eval_period

    def after_step(self):
        if is_eval_iteration(self.trainer.iter, self.trainer.max_iter, self._eval_period):
            for writer in self._writers:
                writer.write()
        else:
            super().after_step()


class WandbPredictionImagesHook(HookBase):
    """At each evaluation, predict a fixed set of validation images and log them to W&B with
    boxes labelled by part and state. Main process only; never affects training."""

    def __init__(self, writer, inputs_fn, eval_period):
        """
        Args:
            writer (WandbWriter): where the images go.
            inputs_fn (callable): returns ``(model_inputs, originals)``: mapped test inputs and
                the matching ``(RGB uint8 HxWx3 image, dataset dict)`` pairs.
            eval_period (int): same as the evaluation hook's.
        """
        self._writer = writer
        self._inputs_fn = inputs_fn
        self._period = eval_period
        self._cache = None

    def after_step(self):
        if not self._writer.enabled:
            return
        if not is_eval_iteration(self.trainer.iter, self.trainer.max_iter, self._period):
            return
        try:
            if self._cache is None:
                self._cache = self._inputs_fn()
            inputs, originals = self._cache
            if not inputs:
                return
            module = unwrap_model(self.trainer.model)
            was_training = module.training
            module.eval()
            try:
                with preserve_rng_state(), torch.no_grad():
                    outputs = [module([x])[0] for x in inputs]
            finally:
                module.train(was_training)
            self._writer.log_predictions(self.trainer.iter, originals, outputs)
        except Exception as e:  # W&B images are a convenience: never stop training for them
            self._writer.disable(f"could not log prediction images: {e}")


# Periodic checkpoint files: <prefix>_<iteration:07d>.pth.
_PERIODIC_RE = re.compile(r"^(?P<prefix>.+)_(?P<iter>\d{7})\.pth$")


class RetainingPeriodicCheckpointer(HookBase):
    """Save ``<prefix>_<iter:07d>.pth`` every ``period`` iterations and ``<prefix>_final.pth`` at
    the end; keep the newest ``max_to_keep`` periodic files (0: all).

    Retention looks at the files on disk, not at an in-memory list, so checkpoints written before
    a ``--resume`` are also subject to it. Runs on the main process only.
    """

    def __init__(self, checkpointer, period, max_to_keep=0, file_prefix="model"):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_to_keep = int(max_to_keep)
        self.file_prefix = file_prefix

    def after_step(self):
        iteration = self.trainer.iter
        last = iteration >= self.trainer.max_iter - 1
        if self.period > 0 and (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", iteration=iteration)
            self._apply_retention()
        if last:
            self.checkpointer.save(f"{self.file_prefix}_final", iteration=iteration)

    def save_final(self):
        """Save ``<prefix>_final`` now (early stop ends training before ``max_iter``)."""
        self.checkpointer.save(f"{self.file_prefix}_final", iteration=self.trainer.iter)

    def _apply_retention(self):
        if self.max_to_keep <= 0:
            return
        save_dir = self.checkpointer.save_dir
        tagged = os.path.basename(self.checkpointer.get_checkpoint_file())
        periodic = []
        for name in os.listdir(save_dir):
            m = _PERIODIC_RE.match(name)
            if m and m.group("prefix") == self.file_prefix:
                periodic.append((int(m.group("iter")), name))
        periodic.sort()
        for _, name in periodic[: max(0, len(periodic) - self.max_to_keep)]:
            if name == tagged:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(save_dir, name))
                logger.info("Deleted old checkpoint %s (SOLVER.MAX_TO_KEEP=%d)", name,
                            self.max_to_keep)
