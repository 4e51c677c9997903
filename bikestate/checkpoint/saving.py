"""Crash-safe saving of checkpoints.

Every checkpoint and the ``last_checkpoint`` tag are written to a temporary file in the output
folder, flushed, fsync'ed and renamed into place (:func:`bikestate.utils.io.atomic_open`), so a
``kill -9`` at any moment leaves either the previous file or the new one. The periodic
checkpointer hook (:class:`bikestate.engine.hooks.RetainingPeriodicCheckpointer`) deletes old
checkpoints (``SOLVER.MAX_TO_KEEP``) only after the new one and its tag are in place.

Debugging knob: ``BIKESTATE_DEBUG_SAVE_DELAY=<seconds>`` sleeps after a checkpoint's bytes are
written and before the rename, which makes "killed during a checkpoint write" reproducible in
tests. It changes nothing else and is off by default.
"""
import contextlib
import glob
import logging
import os
import shutil
import time

import torch

from ..utils.errors import BikeStateError
from ..utils.io import atomic_open, atomic_write_text
from .loading import BikeStateCheckpointer

__all__ = ["CheckpointWriteError", "TrainingCheckpointer"]

logger = logging.getLogger(__name__)

SAVE_DELAY_ENV = "BIKESTATE_DEBUG_SAVE_DELAY"


class CheckpointWriteError(BikeStateError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""


class TrainingCheckpointer(BikeStateCheckpointer):
    """The trainer's checkpointer: safe loading from :class:`BikeStateCheckpointer`
    (``allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS``), atomic saving here.

    ``save(name, tag_last=True, **extra)`` writes ``<save_dir>/<name>.pth``; with
    ``tag_last=False`` (used for ``model_best``) the ``last_checkpoint`` tag is left alone, so
    ``--resume`` always continues from the newest *periodic* checkpoint.
    """

    def save(self, name, tag_last=True, **kwargs):
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        self._write(name, data, tag_last)

    def save_weights_only(self, name, **kwargs):
        """Write ``<name>.pth`` with the model weights and ``kwargs`` only (no optimizer or
        trainer state) and leave ``last_checkpoint`` alone: the best-model file."""
        self._write(name, {"model": self.model.state_dict(), **kwargs}, tag_last=False)

    def _write(self, name, data, tag_last):
        if not self.save_dir or not self.save_to_disk:
            return
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        try:
            with atomic_open(save_file, "wb") as f:
                torch.save(data, f)
                _debug_save_delay()
            if tag_last:
                self.tag_last_checkpoint(basename)
        except (OSError, RuntimeError) as e:
            # torch's zip writer reports a failed write (disk full, file size limit) as a
            # RuntimeError; atomic_open has already removed the temporary file.
            if isinstance(e, RuntimeError) and not _looks_like_write_failure(e):
                raise
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            try:
                free = f"; {shutil.disk_usage(self.save_dir).free // 2**20} MiB free there"
            except OSError:
                free = ""
            previous = self.get_checkpoint_file() if self.has_checkpoint() else ""
            raise CheckpointWriteError(
                f"could not write checkpoint {save_file}: {reason}{free}; "
                + (f"the previous checkpoint {previous} is intact"
                   if previous else "no earlier checkpoint exists")
            ) from e

    def tag_last_checkpoint(self, last_filename_basename):
        atomic_write_text(last_filename_basename, os.path.join(self.save_dir, "last_checkpoint"))

    def remove_stale_temp_files(self):
        """Delete temporary files left by a save that was killed before its rename."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return
        for path in glob.glob(os.path.join(self.save_dir, ".*.tmp")):
            base = os.path.basename(path)
            if base.startswith((".last_checkpoint.", ".model")) or ".pth." in base:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    logger.info("Removed %s left by an interrupted checkpoint write", path)


def _looks_like_write_failure(error):
    text = str(error)
    return "inline_container" in text or "write" in text.lower() or "file" in text.lower()


def _debug_save_delay():
    delay = os.environ.get(SAVE_DELAY_ENV, "")
    if delay:
        time.sleep(float(delay))
