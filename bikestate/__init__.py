"""bikestate: bicycle part detection and part-state verification as a detectron2 plugin.

Importing ``bikestate`` is cheap (no torch, no detectron2): the command-line tools that only
convert or split annotation files, ``bikestate.collect_env`` and ``bikestate.constants`` start
in well under a second. The model parts register with detectron2's registries when
:mod:`bikestate.modeling` is imported, which :func:`add_bikestate_config` does, so every config
that can name a bikestate head can also build it::

    from detectron2.config import get_cfg
    from bikestate import add_bikestate_config

    cfg = add_bikestate_config(get_cfg())   # keys added, ROI heads / backbones registered

Subpackages (``bikestate.data``, ``bikestate.modeling``, ``bikestate.evaluation``,
``bikestate.inference``, ``bikestate.engine``) load on first attribute access.
"""
import importlib

# First, before anything imports detectron2: library deprecation notices a user cannot act on.
from .utils.library_warnings import silence_library_warnings

silence_library_warnings()

from .constants import PART_NAMES, STATE_NAMES  # noqa: E402  isort: skip

__version__ = "0.1.0"
__all__ = ["add_bikestate_config", "PART_NAMES", "STATE_NAMES"]

_SUBPACKAGES = {"config", "data", "deploy", "engine", "evaluation", "inference", "model_zoo",
                "modeling", "serving", "synth", "utils", "verdict"}


def __getattr__(name):
    # PEP 562: the heavy parts (torch, detectron2) load when first used, not at `import bikestate`.
    if name == "add_bikestate_config":
        from .config import add_bikestate_config

        return add_bikestate_config
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bikestate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | _SUBPACKAGES)
