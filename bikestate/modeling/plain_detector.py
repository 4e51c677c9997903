"""The plain detector baseline: detectron2's ROI heads with no state branch.

As in the VIPriors DelftBikes challenge, a plain Faster R-CNN is trained on the parts that are
there (``BIKESTATE.DATA.TRAIN_DROP_STATES: ["absent"]``) and its only verdict is "present"
when it detects a part. :class:`PlainDetectorROIHeads` gives every detection the state
"intact" with certainty, so the bikestate evaluator, the calibration and the inspection report
score it by the same rule as a bikestate model: a missing part that the detector finds is a
hallucination. ``configs/bike_small_cpu_plain_detector.yaml`` is the small CPU config with it.
"""
from typing import Dict, List, Optional

import torch

from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import ImageList, Instances

from ..constants import STATE_NAMES
from .roi_align import set_pooler_cpu_backward

__all__ = ["PlainDetectorROIHeads"]

_PRESENT = STATE_NAMES.index("intact")


@ROI_HEADS_REGISTRY.register()
class PlainDetectorROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` (no state loss) whose detections all say "present".

    Training is detectron2's unchanged. At inference each detection gets ``pred_states`` (Ri,)
    = intact and ``state_scores`` (Ri, S) = one-hot intact, the fields a bikestate model
    gives, so the presence score of a detection is its detection score.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        set_pooler_cpu_backward(ret["box_pooler"], cfg.MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD)
        return ret

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ):
        instances, losses = super().forward(images, features, proposals, targets)
        if not self.training:
            self._set_present(instances)
        return instances, losses

    def forward_with_given_boxes(self, features: Dict[str, torch.Tensor],
                                 instances: List[Instances]) -> List[Instances]:
        instances = super().forward_with_given_boxes(features, instances)
        self._set_present(instances)
        return instances

    @staticmethod
    def _set_present(instances: List[Instances]):
        for inst in instances:
            num = len(inst)
            device = inst.pred_classes.device
            inst.pred_states = torch.full((num,), _PRESENT, dtype=torch.int64, device=device)
            scores = torch.zeros((num, len(STATE_NAMES)), dtype=torch.float32, device=device)
            scores[:, _PRESENT] = 1.0
            inst.state_scores = scores
