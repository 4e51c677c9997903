"""Extra backbones, registered in detectron2's BACKBONE_REGISTRY.

* ``build_basic_resnet_fpn_backbone``: ResNet-18/34 of any width + FPN (small CPU models);
* ``build_timm_fpn_backbone``: any timm model + FPN (optional extra ``timm``).
"""
from .basic_resnet import build_basic_resnet_backbone, build_basic_resnet_fpn_backbone
from .timm_fpn import TimmBackbone, build_timm_backbone, build_timm_fpn_backbone

__all__ = ["TimmBackbone", "build_timm_backbone", "build_timm_fpn_backbone",
           "build_basic_resnet_backbone", "build_basic_resnet_fpn_backbone"]
