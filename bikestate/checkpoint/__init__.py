"""Model weights on disk, in one place: safe loading (:mod:`.loading`) and crash-safe saving
(:mod:`.saving`).

- :class:`BikeStateCheckpointer`: detectron2's ``DetectionCheckpointer`` that runs no code while
  loading, reports what it kept and skipped, and turns every way of not getting weights into one
  :class:`~bikestate.utils.errors.WeightsError`;
- :func:`check_weights`: the training tool's early check of ``MODEL.WEIGHTS``;
- :func:`load_model_weights`: prediction's strict policy: every tensor of the model must come
  from the file;
- :class:`TrainingCheckpointer`: the same checkpointer whose files appear atomically, so a
  ``kill -9`` leaves the previous checkpoint or the new one, never half of one;
- :func:`resolve_training_folder`: the config and preferred weights of a training output folder.
"""
from .loading import (
    TRUSTED_PICKLE_PREFIXES,
    BikeStateCheckpointer,
    check_weights,
    is_model_zoo_url,
    load_model_weights,
)
from .saving import CheckpointWriteError, TrainingCheckpointer
from .training_folder import (
    TRAINING_FOLDER_CONFIG,
    TRAINING_FOLDER_WEIGHTS,
    resolve_training_folder,
    training_folder_weights,
)

__all__ = ["BikeStateCheckpointer", "check_weights", "load_model_weights", "is_model_zoo_url",
           "TRUSTED_PICKLE_PREFIXES",
           "TrainingCheckpointer", "CheckpointWriteError", "resolve_training_folder",
           "training_folder_weights", "TRAINING_FOLDER_CONFIG", "TRAINING_FOLDER_WEIGHTS"]
