"""The any-width ResNet-18/34 + FPN backbone of the small CPU config."""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from bikestate.utils.errors import ConfigError

from modeling_cases import make_cfg


def test_half_width_resnet18_fpn_levels():
    cfg = make_cfg()  # bike_small_cpu.yaml
    assert cfg.MODEL.BACKBONE.NAME == "build_basic_resnet_fpn_backbone"
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    bottom_up = backbone.bottom_up
    assert [bottom_up.output_shape()[f].channels for f in ("res3", "res4", "res5")] == \
        [64, 128, 256]  # RES2_OUT_CHANNELS 32, doubled per stage
    shapes = backbone.output_shape()
    assert list(shapes) == ["p3", "p4", "p5", "p6"]
    assert [s.stride for s in shapes.values()] == [8, 16, 32, 64]
    out = backbone(torch.randn(2, 3, 128, 160))
    assert out["p3"].shape == (2, cfg.MODEL.FPN.OUT_CHANNELS, 16, 20)
    assert out["p6"].shape[-2:] == (2, 3)


def test_only_basic_block_depths():
    with pytest.raises(ConfigError, match="DEPTH 18 or 34"):
        build_backbone(make_cfg(opts=["MODEL.RESNETS.DEPTH", 50]), ShapeSpec(channels=3))
