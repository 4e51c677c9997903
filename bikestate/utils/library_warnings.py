"""Quiet command lines: drop the deprecation notices of torch and fvcore that a bikestate user
cannot act on, so that what a tool prints is about the user's run.

Each notice is matched by its message *and* by the module that emits it; nothing is silenced
globally, and every other warning (including torch's and detectron2's) still shows.
"""
import logging
import warnings

__all__ = ["silence_library_warnings"]

# (category, message regex, emitting module regex) for ``warnings.filterwarnings``.
_LIBRARY_WARNINGS = (
    # fvcore.nn and detectron2 script a few functions at import time.
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script"),
    # A TorchScript export (bikestate.deploy) is loaded with torch.jit.load.
    (FutureWarning, r"`torch\.jit\.load` is deprecated", r"torch\.jit\._serialization"),
    # detectron2's anchor generator calls torch.meshgrid without ``indexing``.
    (UserWarning, r"torch\.meshgrid: in an upcoming release", r"torch\.functional"),
)

# (logger name, message prefix) for notices torch sends through ``logging`` instead.
_LIBRARY_LOG_NOTICES = (
    # detectron2's ``torch.fx`` wrap checks call ``is_fx_tracing`` on every forward.
    ("torch.fx._symbolic_trace", "is_fx_tracing will return true"),
    # detectron2's environment report (default_setup) probes CUDA_HOME on a machine without CUDA.
    ("torch.utils.cpp_extension", "No CUDA runtime is found"),
)


class _DropNotice(logging.Filter):
    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix

    def filter(self, record):
        return not str(record.msg).startswith(self.prefix)


def silence_library_warnings():
    """Install the filters above (idempotent: ``warnings`` deduplicates identical filters and a
    logger gets each notice filter once)."""
    for category, message, module in _LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for logger_name, prefix in _LIBRARY_LOG_NOTICES:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _DropNotice) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropNotice(prefix))
