"""The timm backbone behind detectron2's FPN, chosen by config alone."""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from bikestate.utils.errors import ConfigError

from modeling_cases import make_cfg

timm = pytest.importorskip("timm", reason="the timm backbone needs the optional extra 'timm'")


def timm_cfg(name, out_indices, opts=()):
    return make_cfg(opts=["MODEL.BACKBONE.NAME", "build_timm_fpn_backbone",
                          "MODEL.TIMM.NAME", name, "MODEL.TIMM.OUT_INDICES", out_indices,
                          "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
                          "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"],
                          *opts])


def test_timm_fpn_backbone_is_registered():
    assert BACKBONE_REGISTRY.get("build_timm_fpn_backbone") is not None


@pytest.mark.parametrize("name,out_indices", [("resnet18", [1, 2, 3, 4]),
                                              ("convnext_atto", [0, 1, 2, 3])])
def test_timm_model_gives_fpn_levels_p2_to_p6(name, out_indices):
    cfg = timm_cfg(name, out_indices)
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    shapes = backbone.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32, 64]
    out = backbone(torch.randn(1, 3, 128, 160))
    assert out["p2"].shape == (1, cfg.MODEL.FPN.OUT_CHANNELS, 32, 40)
    assert out["p6"].shape[-2:] == (2, 3)


def test_unknown_timm_model_or_missing_stage_is_a_config_error():
    with pytest.raises(ConfigError, match="not a timm model"):
        build_backbone(timm_cfg("no_such_net", [1, 2, 3, 4]), ShapeSpec(channels=3))
    # resnet18's index 0 is the stride-2 stem: res2 (stride 4) is then missing for the FPN.
    with pytest.raises(ConfigError, match="not produced by timm model .resnet18.*gives .*res1"):
        build_backbone(timm_cfg("resnet18", [0, 1, 2, 3]), ShapeSpec(channels=3))
