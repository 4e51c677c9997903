"""ResNet-18/34 of any width behind detectron2's FPN, for small from-scratch CPU models.

detectron2's ``build_resnet_backbone`` insists on ``RES2_OUT_CHANNELS = 64`` for the basic-block
ResNets (the ImageNet widths, needed to load pretrained weights). A from-scratch model has no
weights to match, and a half-width ResNet-18 costs about a quarter of the compute: this builder
takes the same ``MODEL.RESNETS`` keys (``DEPTH`` 18 or 34, ``STEM_OUT_CHANNELS``,
``RES2_OUT_CHANNELS``, ``NORM``, ``OUT_FEATURES``) without that restriction.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, ResNet
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

from ...utils.errors import ConfigError
from .fpn import build_fpn_with_max_pool_level

__all__ = ["build_basic_resnet_backbone", "build_basic_resnet_fpn_backbone"]

_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


@BACKBONE_REGISTRY.register()
def build_basic_resnet_backbone(cfg, input_shape: ShapeSpec):
    """ResNet-18/34 (basic blocks) with widths STEM_OUT_CHANNELS and RES2_OUT_CHANNELS * 2^k."""
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in _BLOCKS_PER_STAGE:
        raise ConfigError(f"build_basic_resnet_*_backbone needs MODEL.RESNETS.DEPTH 18 or 34, "
                          f"got {depth}")
    norm = cfg.MODEL.RESNETS.NORM
    stem = BasicStem(input_shape.channels, cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, norm=norm)
    in_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
    out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    stages = []
    for idx, num_blocks in enumerate(_BLOCKS_PER_STAGE[depth]):
        stages.append(ResNet.make_stage(
            block_class=BasicBlock,
            num_blocks=num_blocks,
            stride_per_block=[1 if idx == 0 else 2] + [1] * (num_blocks - 1),
            in_channels=in_channels,
            out_channels=out_channels,
            norm=norm,
        ))
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
                  freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_basic_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """:func:`build_basic_resnet_backbone` behind an FPN with a max-pooled extra level."""
    return build_fpn_with_max_pool_level(cfg, build_basic_resnet_backbone(cfg, input_shape))
