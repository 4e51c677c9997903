"""bikestate: bicycle part detection and part-state verification as a detectron2 plugin.

Importing this package registers its components with detectron2 (ROI heads, state heads,
backbones, dataset evaluator), like detectron2's own projects do. Without detectron2 installed
only the torch-free parts work: :mod:`bikestate.deploy`, the verdict rule and the report.
"""
# First, before detectron2 is imported: library deprecation notices a user cannot act on.
from .utils.library_warnings import silence_library_warnings

silence_library_warnings()

from .constants import PART_NAMES, STATE_NAMES  # noqa: E402  isort: skip

__version__ = "0.1.0"

try:
    import detectron2  # noqa: F401
except ImportError:
    # The deployment runtime (bikestate.deploy with onnxruntime) runs where neither torch nor
    # detectron2 is installed; it needs no registration.
    __all__ = ["PART_NAMES", "STATE_NAMES"]
else:
    from .config import add_bikestate_config  # noqa: E402  isort: skip

    # Imported for registration with detectron2's registries only.
    from . import data, evaluation, modeling  # noqa: F401  isort: skip

    __all__ = ["add_bikestate_config", "PART_NAMES", "STATE_NAMES"]
