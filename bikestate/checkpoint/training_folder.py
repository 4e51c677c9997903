"""A training output folder as ``tools/train_net.py`` leaves it: the config detectron2's
``default_setup`` writes (``config.yaml``), the checkpoints (``model_best.pth`` and/or
``model_final.pth``) and, beside them, the calibrated verdict rule (``thresholds.json``,
:data:`bikestate.verdict.THRESHOLDS_FILE`).

Every tool that takes a training folder (``tools/serve.py --model``, ``tools/demo.py``, the
benchmarks) finds its config and weights here, so they all pick the same checkpoint.
"""
import os

from ..utils.errors import ConfigError

__all__ = ["TRAINING_FOLDER_CONFIG", "TRAINING_FOLDER_WEIGHTS", "training_folder_weights",
           "resolve_training_folder"]

# A training folder's weights, in order of preference: the best checkpoint is the one the end
# of training calibrates (thresholds.json), the final one the fallback.
TRAINING_FOLDER_WEIGHTS = ("model_best.pth", "model_final.pth")
# The config detectron2's default_setup writes into a training folder.
TRAINING_FOLDER_CONFIG = "config.yaml"


def training_folder_weights(folder):
    """The preferred weights file of a training folder (:data:`TRAINING_FOLDER_WEIGHTS`), or
    None when it holds none of them."""
    return next((os.path.join(folder, name) for name in TRAINING_FOLDER_WEIGHTS
                 if os.path.isfile(os.path.join(folder, name))), None)


def resolve_training_folder(folder, config_file=None):
    """(config file, weights file) of a training folder.

    Args:
        folder (str): the training output folder (``OUTPUT_DIR`` of the run).
        config_file (str or None): a config that overrides the folder's ``config.yaml``.

    Raises:
        ConfigError: one line naming the folder and what it lacks.
    """
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: no such training folder")
    weights = training_folder_weights(folder)
    if weights is None:
        raise ConfigError(f"{folder}: no {' or '.join(TRAINING_FOLDER_WEIGHTS)} in this "
                          f"folder; give a training output folder or a weights file")
    if config_file is None:
        config_file = os.path.join(folder, TRAINING_FOLDER_CONFIG)
        if not os.path.isfile(config_file):
            raise ConfigError(f"{folder}: no {TRAINING_FOLDER_CONFIG} in this folder; "
                              f"give the model's config with --config-file")
    return config_file, weights
