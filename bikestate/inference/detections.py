"""One image's predictions as numpy arrays, whichever runtime produced them.

:class:`BikeStatePredictor` returns detectron2 ``Instances`` (torch tensors);
:class:`bikestate.deploy.OnnxBikeStatePredictor` returns :class:`Detections` (numpy arrays),
because it runs where neither torch nor detectron2 is installed. The records of
predictions.json, the inspection report and the pictures are computed from
:class:`Detections`; :func:`as_detections` converts ``Instances`` into it, so both runtimes go
through one implementation. This module imports neither torch nor detectron2.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np

__all__ = ["Detections", "as_detections"]


@dataclass
class Detections:
    """Predictions of one image in the pixels of the original image.

    Attributes:
        image_size (tuple[int, int]): (height, width) of the original image.
        boxes (np.ndarray): float32 (N, 4) XYXY boxes.
        scores (np.ndarray): float32 (N,) detection scores.
        classes (np.ndarray): int64 (N,) part index (contiguous class id).
        states (np.ndarray): int64 (N,) most probable state of each detection.
        state_scores (np.ndarray): float32 (N, S) state probabilities, rows sum to 1.
    """

    image_size: Tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    states: np.ndarray
    state_scores: np.ndarray

    def __len__(self):
        return int(self.scores.shape[0])

    def __getitem__(self, keep):
        """The detections selected by ``keep`` (a boolean mask or indices), same image."""
        return Detections(self.image_size, self.boxes[keep], self.scores[keep],
                          self.classes[keep], self.states[keep], self.state_scores[keep])

    @classmethod
    def from_instances(cls, instances):
        """Arrays of detectron2 ``Instances`` with ``pred_boxes``, ``scores``,
        ``pred_classes``, ``pred_states`` and ``state_scores`` (on any device)."""

        def array(tensor):
            return tensor.detach().cpu().numpy()

        return cls(image_size=tuple(int(v) for v in instances.image_size),
                   boxes=array(instances.pred_boxes.tensor).reshape(-1, 4),
                   scores=array(instances.scores),
                   classes=array(instances.pred_classes).astype(np.int64),
                   states=array(instances.pred_states).astype(np.int64),
                   state_scores=array(instances.state_scores.float()))


def as_detections(predictions):
    """``predictions`` as :class:`Detections`: itself, or converted from ``Instances``."""
    if isinstance(predictions, Detections):
        return predictions
    return Detections.from_instances(predictions)
