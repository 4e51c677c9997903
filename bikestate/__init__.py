"""bikestate: bicycle part detection and part-state verification as a detectron2 plugin.

Importing this package registers its components with detectron2 (ROI heads, state heads,
backbones, dataset evaluator), like detectron2's own projects do.
"""
# First, before detectron2 is imported: library deprecation notices a user cannot act on.
from .utils.library_warnings import silence_library_warnings

silence_library_warnings()

from .config import add_bikestate_config  # noqa: E402  isort: skip
from .constants import PART_NAMES, STATE_NAMES  # noqa: E402  isort: skip

# Imported for registration with detectron2's registries only.
from . import data, evaluation, modeling  # noqa: F401  isort: skip

__version__ = "0.1.0"
__all__ = ["add_bikestate_config", "PART_NAMES", "STATE_NAMES"]
