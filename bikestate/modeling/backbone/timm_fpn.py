"""Any `timm <https://github.com/huggingface/pytorch-image-models>`_ model behind detectron2's FPN.

Selected by config alone::

    MODEL:
      BACKBONE: {NAME: "build_timm_fpn_backbone"}
      TIMM: {NAME: "convnext_nano", OUT_INDICES: [1, 2, 3, 4]}

The timm model runs with ``features_only=True``; each selected stage is exposed as
``res<k>`` where ``2**k`` is its stride, so the usual ``MODEL.FPN.IN_FEATURES``
(``res2``..``res5``) and everything downstream (RPN on ``p2``..``p6``, ROI heads on
``p2``..``p5``) work unchanged. timm is an optional dependency (``pip install bikestate[timm]``).
"""
import math
from typing import Dict

import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone

from ...utils.errors import ConfigError, WeightsError
from .fpn import build_fpn_with_max_pool_level

__all__ = ["TimmBackbone", "build_timm_backbone", "build_timm_fpn_backbone"]


def _import_timm():
    try:
        import timm
    except ImportError as e:  # an optional extra: say how to get it
        raise ConfigError(
            "MODEL.BACKBONE.NAME needs the optional package timm: pip install 'bikestate[timm]'"
        ) from e
    return timm


class TimmBackbone(Backbone):
    """A timm model's feature stages as a detectron2 :class:`Backbone`.

    ``forward(x)`` takes images (N, 3, H, W) and returns ``{"res<k>": (N, C_k, H/2^k, W/2^k)}``
    for the stages in ``out_indices``.
    """

    def __init__(self, model_name: str, out_indices=(1, 2, 3, 4), pretrained: bool = False,
                 in_chans: int = 3):
        super().__init__()
        timm = _import_timm()
        if not timm.is_model(model_name):
            raise ConfigError(f"MODEL.TIMM.NAME {model_name!r} is not a timm model")
        try:
            self.body = timm.create_model(
                model_name,
                pretrained=pretrained,
                features_only=True,
                out_indices=tuple(out_indices),
                in_chans=in_chans,
            )
        except Exception as e:  # noqa: BLE001  any hub/network failure: say what to do
            if not pretrained:
                raise
            raise WeightsError(
                f"cannot fetch the ImageNet weights of timm model {model_name!r} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); to train it from scratch "
                f"set MODEL.TIMM.PRETRAINED False"
            ) from e
        info = self.body.feature_info
        self._out_features = []
        self._out_feature_strides: Dict[str, int] = {}
        self._out_feature_channels: Dict[str, int] = {}
        for reduction, channels in zip(info.reduction(), info.channels()):
            name = f"res{int(round(math.log2(reduction)))}"
            self._out_features.append(name)
            self._out_feature_strides[name] = reduction
            self._out_feature_channels[name] = channels
        if len(set(self._out_features)) != len(self._out_features):
            raise ConfigError(
                f"MODEL.TIMM.OUT_INDICES {list(out_indices)} of {model_name!r} give stages of "
                f"equal stride {info.reduction()}: pick one stage per stride"
            )

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return dict(zip(self._out_features, self.body(x)))

    def output_shape(self):
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name],
                            stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_timm_backbone(cfg, input_shape: ShapeSpec):
    """The timm model ``cfg.MODEL.TIMM.NAME`` alone (no FPN), for C4-style heads."""
    return TimmBackbone(cfg.MODEL.TIMM.NAME, cfg.MODEL.TIMM.OUT_INDICES,
                        cfg.MODEL.TIMM.PRETRAINED, in_chans=input_shape.channels)


@BACKBONE_REGISTRY.register()
def build_timm_fpn_backbone(cfg, input_shape: ShapeSpec):
    """The timm model ``cfg.MODEL.TIMM.NAME`` behind an FPN (+ max-pooled P6, as R50-FPN)."""
    bottom_up = build_timm_backbone(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    missing = [f for f in in_features if f not in bottom_up.output_shape()]
    if missing:
        raise ConfigError(
            f"MODEL.FPN.IN_FEATURES {in_features} not produced by timm model "
            f"{cfg.MODEL.TIMM.NAME!r} with OUT_INDICES {list(cfg.MODEL.TIMM.OUT_INDICES)}; "
            f"it gives {list(bottom_up.output_shape())}"
        )
    return build_fpn_with_max_pool_level(cfg, bottom_up)
