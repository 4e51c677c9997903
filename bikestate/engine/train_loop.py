"""The inner training step of bikestate: gradient accumulation, mixed precision, a clear stop on
a non-finite loss, and skipping of images that cannot be read.

:class:`BikeStateTrainLoop` replaces detectron2's ``SimpleTrainer``/``AMPTrainer`` inside
:class:`~bikestate.engine.trainer.BikeStateTrainer`.
"""
import contextlib
import logging
import math
import time

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import get_total_norm

import detectron2.utils.comm as comm
from detectron2.engine.train_loop import SimpleTrainer
from detectron2.utils.events import get_event_storage

from ..data.mapper import SKIPPED_KEY
from ..utils.errors import BikeStateError, DataError

__all__ = ["NonFiniteLossError", "BikeStateTrainLoop"]

logger = logging.getLogger(__name__)

class NonFiniteLossError(BikeStateError, FloatingPointError):
    """A loss term became NaN or infinite; training stops before the weights are touched."""


class BikeStateTrainLoop(SimpleTrainer):
    """One training iteration = one optimizer update over ``accum_steps`` mini-batches.

    Each mini-batch's loss is scaled by ``1 / accum_steps`` before ``backward`` so the accumulated
    gradient equals the gradient of the mean loss over the large batch; DDP synchronizes
    gradients only on the last mini-batch. The logged losses are the unscaled means over the
    mini-batches. With ``amp`` (CUDA only) the forward runs under ``torch.autocast`` and the
    update goes through a ``GradScaler``.

    Before ``backward`` every loss term is checked on every process (gathered when distributed):
    a NaN or infinite term raises :class:`NonFiniteLossError` naming the iteration and the terms,
    so no update with a broken gradient is made and no checkpoint is written afterwards.
    """

    def __init__(self, model, data_loader, optimizer, *, accum_steps=1, amp=False,
                 amp_dtype=torch.float16, max_skipped_images=-1):
        super().__init__(model, data_loader, optimizer)
        if accum_steps < 1:
            raise BikeStateError(f"SOLVER.GRAD_ACCUM_STEPS must be >= 1, not {accum_steps}")
        self.accum_steps = int(accum_steps)
        self.amp = bool(amp)
        self.amp_dtype = amp_dtype
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.max_skipped_images = int(max_skipped_images)
        self.skipped_images = 0

    def run_step(self):
        assert self.model.training, "[BikeStateTrainLoop] model was changed to eval mode!"
        self.optimizer.zero_grad(set_to_none=True)
        data_time = 0.0
        sums = {}
        for k in range(self.accum_steps):
            start = time.perf_counter()
            data = next(self._data_loader_iter)
            data_time += time.perf_counter() - start
            skipped = self._pop_skipped(data)
            last = k == self.accum_steps - 1
            no_sync = (self.model.no_sync() if not last and isinstance(
                self.model, DistributedDataParallel) else contextlib.nullcontext())
            with no_sync:
                autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp
                            else contextlib.nullcontext())
                forward_error = None
                try:
                    with autocast:
                        loss_dict = self.model(data)
                        if isinstance(loss_dict, torch.Tensor):
                            loss_dict = {"total_loss": loss_dict}
                        losses = sum(loss_dict.values())
                    values = {name: float(v.detach()) for name, v in loss_dict.items()}
                except FloatingPointError as e:
                    # detectron2's RPN refuses NaN/Inf box predictions before any loss exists
                    values, forward_error = {}, " ".join(str(e).split())
                self._check_finite_and_count(values, skipped, forward_error)
                scaled = losses / self.accum_steps
                if self.amp:
                    self.grad_scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + v

        self.after_backward()
        mean = {name: torch.tensor(v / self.accum_steps) for name, v in sums.items()}
        self._write_metrics(mean, data_time)
        storage = get_event_storage()
        storage.put_scalar("data/skipped_images", self.skipped_images, smoothing_hint=False)
        if self.amp:  # the GradScaler skips steps with inf/NaN gradients by design
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self._check_finite_gradients()
            self.optimizer.step()

    def _check_finite_gradients(self):
        """Refuse an update with NaN/Inf gradients: it would silently destroy the weights (and
        every checkpoint after it). Gradients are identical on all processes after DDP's
        all-reduce, so every process stops here together."""
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return
        # The largest |gradient| is NaN or infinite exactly when some gradient is: one fused
        # pass over all gradients; the per-parameter search runs only when it failed.
        largest = get_total_norm([p.grad for p in params], norm_type=math.inf)
        if bool(torch.isfinite(largest)):
            return
        finite = torch.stack([torch.isfinite(p.grad).all() for p in params])
        names = {p: n for n, p in self.model.named_parameters()}
        bad = [names.get(p, "?") for p, ok in zip(params, finite.tolist()) if not ok]
        raise NonFiniteLossError(
            f"training stopped at iteration {self.iter}: non-finite gradients in {len(bad)} "
            f"parameters ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the weights "
            "were not updated with them and the last checkpoint is intact. Lower "
            "SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS or check the annotations."
        )

    @staticmethod
    def _pop_skipped(data):
        names = []
        for d in data:
            names.extend(d.pop(SKIPPED_KEY, []))
        return names

    def _check_finite_and_count(self, values, skipped, forward_error=None):
        """Gather loss values, forward errors and skipped images from all processes (so every
        process stops together); raise on any problem."""
        mine = (values, skipped, forward_error)
        everything = comm.all_gather(mine) if comm.get_world_size() > 1 else [mine]
        bad = {}
        new_skipped = []
        for rank_values, rank_skipped, rank_error in everything:
            for name, v in rank_values.items():
                if not math.isfinite(v):
                    bad[name] = v
            if rank_error:
                bad["model outputs"] = rank_error
            new_skipped.extend(rank_skipped)
        if bad:
            terms = ", ".join(f"{n}={v}" for n, v in sorted(bad.items()))
            raise NonFiniteLossError(
                f"training stopped at iteration {self.iter}: non-finite loss ({terms}); "
                "the weights were not updated with it and the last checkpoint is intact. "
                "Lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS or check the annotations."
            )
        if new_skipped:
            self.skipped_images += len(new_skipped)
            if 0 <= self.max_skipped_images < self.skipped_images:
                raise DataError(
                    f"{self.skipped_images} training images could not be read, more than "
                    f"BIKESTATE.DATA.MAX_SKIPPED_IMAGES={self.max_skipped_images} "
                    f"(last: {new_skipped[-1]}); check the image folder",
                )

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        SimpleTrainer.write_metrics(loss_dict, data_time, self.iter if iter is None else iter,
                                    prefix)

    def state_dict(self):
        ret = super().state_dict()
        ret["skipped_images"] = self.skipped_images
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.skipped_images = int(state_dict.get("skipped_images", 0))
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
