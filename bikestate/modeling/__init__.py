"""bikestate's model parts; importing this package registers them with detectron2.

* ``StateROIHeads`` in ``ROI_HEADS_REGISTRY`` (``MODEL.ROI_HEADS.NAME: "StateROIHeads"``);
* state heads in :data:`STATE_HEAD_REGISTRY` (``MODEL.ROI_STATE_HEAD.NAME``);
* ``build_timm_fpn_backbone`` / ``build_timm_backbone`` in ``BACKBONE_REGISTRY``.
"""
from .backbone import build_timm_backbone, build_timm_fpn_backbone
from .roi_heads import StateROIHeads
from .state_head import STATE_HEAD_REGISTRY, MLPStateHead, build_state_head, state_loss

__all__ = [
    "StateROIHeads",
    "STATE_HEAD_REGISTRY",
    "MLPStateHead",
    "build_state_head",
    "state_loss",
    "build_timm_backbone",
    "build_timm_fpn_backbone",
]
