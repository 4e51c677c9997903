"""The FPN that bikestate's extra backbones share."""
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool


def build_fpn_with_max_pool_level(cfg, bottom_up):
    """detectron2's FPN over ``bottom_up`` (features ``res<k>`` of stride ``2**k``) with an extra
    max-pooled level, as in ``build_resnet_fpn_backbone``.

    detectron2 pools P6 from "p5"; here it is pooled from the coarsest FPN level, whatever its
    stride, so configs with other ``MODEL.FPN.IN_FEATURES`` (e.g. res3-res5) work too.
    """
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    top_block = LastLevelMaxPool()
    top_block.in_feature = "p" + in_features[-1][len("res"):]
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
