"""Every config in configs/ builds a model that trains one step and predicts, on CPU.

Nothing can be downloaded here, so every model starts from random weights (MODEL.WEIGHTS "",
MODEL.TIMM.PRETRAINED False); the COCO configs keep FrozenBN, whose random statistics give huge
but finite losses.
"""
import glob
import os

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

from bikestate.constants import STATE_NAMES
from bikestate.modeling import PlainDetectorROIHeads, StateROIHeads

from modeling_cases import CONFIG_DIR, make_cfg, random_batch

# Baselines that are not bikestate models (no state branch), tested on their own below.
BASELINES = {"bike_small_cpu_plain_detector.yaml"}
CONFIGS = sorted(c for c in glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))
                 if os.path.basename(c) not in BASELINES)
NEEDS_TIMM = {"bike_timm_convnext_fpn.yaml"}


def test_configs_exist():
    names = {os.path.basename(c) for c in CONFIGS}
    assert {"Base-BikeState-RCNN-FPN.yaml", "bike_r50_fpn.yaml", "bike_r101_fpn.yaml",
            "bike_x101_32x8d_fpn.yaml", "bike_small_cpu.yaml"} <= names
    assert names & NEEDS_TIMM, "a non-ResNet backbone config"


def test_plain_detector_config_trains_without_states_and_says_present():
    cfg = make_cfg(os.path.join(CONFIG_DIR, "bike_small_cpu_plain_detector.yaml"))
    assert list(cfg.BIKESTATE.DATA.TRAIN_DROP_STATES) == ["absent"]
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.roi_heads, PlainDetectorROIHeads)
    assert not isinstance(model.roi_heads, StateROIHeads)
    model.train()
    with EventStorage():
        losses = model(random_batch(num_boxes=(6, 0), height=96, width=128))
    assert "loss_state" not in losses and "loss_cls" in losses
    model.eval()
    model.roi_heads.box_predictor.test_score_thresh = 0.0  # random weights: keep detections
    with torch.no_grad():
        out = model(random_batch(num_boxes=(0,), height=96, width=128, seed=1))[0]["instances"]
        boxes = Instances(out.image_size, pred_boxes=out.pred_boxes[:3],
                          pred_classes=out.pred_classes[:3])
        # No mask or keypoint head: the given boxes need no feature maps.
        given = model.roi_heads.forward_with_given_boxes({}, [boxes])[0]
    n = len(out)
    assert n > 0
    assert out.pred_states.tolist() == [STATE_NAMES.index("intact")] * n
    assert out.state_scores.tolist() == [[1.0, 0.0, 0.0, 0.0]] * n
    assert given.pred_states.tolist() == out.pred_states[:3].tolist()
    assert given.state_scores.shape == (min(n, 3), 4)


@pytest.mark.parametrize("config_file", CONFIGS, ids=os.path.basename)
def test_config_trains_one_step_and_predicts(config_file):
    if os.path.basename(config_file) in NEEDS_TIMM:
        pytest.importorskip("timm", reason="the timm backbone needs the optional extra 'timm'")
    cfg = make_cfg(config_file)
    assert cfg.MODEL.ROI_HEADS.NAME == "StateROIHeads"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 22
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.roi_heads, StateROIHeads)

    model.train()
    with EventStorage():
        losses = model(random_batch(num_boxes=(6, 0), height=96, width=128))
        total = sum(losses.values())
        total.backward()
    assert "loss_state" in losses
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert all(p.grad is not None for p in model.roi_heads.state_head.parameters())

    model.eval()
    with torch.no_grad():
        out = model(random_batch(num_boxes=(0,), height=96, width=128, seed=1))[0]["instances"]
    n = len(out)
    assert out.pred_states.shape == (n,) and out.pred_states.dtype == torch.int64
    assert out.state_scores.shape == (n, cfg.MODEL.ROI_STATE_HEAD.NUM_STATES)
    if n:
        assert torch.allclose(out.state_scores.sum(dim=1), torch.ones(n), atol=1e-5)


@pytest.mark.parametrize("name,zoo_config", [
    ("bike_r50_fpn.yaml", "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"),
    ("bike_r101_fpn.yaml", "COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml"),
    ("bike_x101_32x8d_fpn.yaml", "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml"),
])
def test_pretrained_configs_name_the_model_zoo_coco_weights(name, zoo_config):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    from bikestate import add_bikestate_config

    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(os.path.join(CONFIG_DIR, name))
    resolved = cfg.MODEL.WEIGHTS.replace("detectron2://", "https://dl.fbaipublicfiles.com/detectron2/")
    assert resolved == model_zoo.get_checkpoint_url(zoo_config)
    zoo = model_zoo.get_config(zoo_config)
    assert (cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.NUM_GROUPS) == \
        (zoo.MODEL.RESNETS.DEPTH, zoo.MODEL.RESNETS.NUM_GROUPS)
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 == zoo.MODEL.RESNETS.STRIDE_IN_1X1
    assert list(cfg.MODEL.PIXEL_STD) == list(zoo.MODEL.PIXEL_STD)


def test_small_cpu_config_trains_from_scratch_with_group_norm():
    cfg = make_cfg(os.path.join(CONFIG_DIR, "bike_small_cpu.yaml"))
    with open(os.path.join(CONFIG_DIR, "bike_small_cpu.yaml")) as f:
        assert 'WEIGHTS: ""' in f.read()
    assert cfg.MODEL.RESNETS.NORM == "GN" and cfg.MODEL.FPN.NORM == "GN"
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0
