"""Extra backbones, registered in detectron2's BACKBONE_REGISTRY (timm models behind an FPN)."""
from .timm_fpn import TimmBackbone, build_timm_backbone, build_timm_fpn_backbone

__all__ = ["TimmBackbone", "build_timm_backbone", "build_timm_fpn_backbone"]
