"""bikestate's model parts; importing this package registers them with detectron2.

* ``StateROIHeads`` in ``ROI_HEADS_REGISTRY`` (``MODEL.ROI_HEADS.NAME: "StateROIHeads"``), and
  ``BatchedStateROIHeads``, the same with the proposals of all images sampled at once;
* ``PlainDetectorROIHeads``: detectron2's ROI heads with no state branch, every detection
  "present" (the plain detector baseline);
* :mod:`.roi_align`: detectron2's ROIAlign with a CPU backward made of matrix products, given to
  the ROI heads' poolers (``MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD``);
* ``BatchedRPN`` in ``PROPOSAL_GENERATOR_REGISTRY`` (``MODEL.PROPOSAL_GENERATOR.NAME``):
  detectron2's RPN with the anchors of all images labelled and sampled at once;
* state heads in :data:`STATE_HEAD_REGISTRY` (``MODEL.ROI_STATE_HEAD.NAME``);
* ``build_timm_fpn_backbone`` / ``build_timm_backbone`` in ``BACKBONE_REGISTRY``.
"""
from .backbone import build_timm_backbone, build_timm_fpn_backbone
from .plain_detector import PlainDetectorROIHeads
from .roi_heads import BatchedStateROIHeads, StateROIHeads
from .rpn import BatchedRPN
from .state_head import STATE_HEAD_REGISTRY, MLPStateHead, build_state_head, state_loss

__all__ = [
    "StateROIHeads",
    "BatchedStateROIHeads",
    "PlainDetectorROIHeads",
    "BatchedRPN",
    "STATE_HEAD_REGISTRY",
    "MLPStateHead",
    "build_state_head",
    "state_loss",
    "build_timm_backbone",
    "build_timm_fpn_backbone",
]
