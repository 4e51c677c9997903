"""The random streams of a training run: captured into checkpoints, restored on ``--resume``,
and left undisturbed by evaluations, so a resumed run sees what an uninterrupted run would."""
import contextlib
import random

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state", "preserve_rng_state"]


def capture_rng_state():
    """The Python, NumPy and torch (CPU and CUDA) random states, for a checkpoint."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    """Restore what :func:`capture_rng_state` captured (after a JSON-like round trip too)."""
    random.setstate(_to_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


@contextlib.contextmanager
def preserve_rng_state():
    """Run a block without disturbing the Python, NumPy and torch (CPU and CUDA) random streams.

    Evaluation draws random numbers (data loader seeds, ROI sampling in the validation loss); the
    training that follows must not depend on whether an evaluation happened, or ``--resume``
    could not reproduce an uninterrupted run.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
