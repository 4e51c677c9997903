"""bikestate: bicycle part detection and part-state verification as a detectron2 plugin.

Importing this package registers its components with detectron2 (ROI heads, state heads,
backbones, dataset evaluator), like detectron2's own projects do.
"""
from .config import add_bikestate_config
from .constants import PART_NAMES, STATE_NAMES

# Imported for registration with detectron2's registries only.
from . import data, evaluation, modeling  # noqa: F401  isort: skip

__version__ = "0.1.0"
__all__ = ["add_bikestate_config", "PART_NAMES", "STATE_NAMES"]
