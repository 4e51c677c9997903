"""Helpers of the modeling tests: configs, random images with random annotations."""
import os

import torch

from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from bikestate import add_bikestate_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "configs")
SMALL_CONFIG = os.path.join(CONFIG_DIR, "bike_small_cpu.yaml")

# Small CPU inputs; nothing can be downloaded, so every model starts from random weights.
TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.TIMM.PRETRAINED", False,
    "INPUT.MIN_SIZE_TRAIN", (128,),
    "INPUT.MAX_SIZE_TRAIN", 160,
    "INPUT.MIN_SIZE_TEST", 128,
    "INPUT.MAX_SIZE_TEST", 160,
    # Fewer proposals and ROIs than the configs' (same architecture, less CPU time).
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 300,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 100,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 300,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 100,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64,
    # Low threshold, so a random model still returns detections to check.
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
]

# The batched training-target assignment (BatchedRPN, BatchedStateROIHeads).
BATCHED_OPTS = ["MODEL.PROPOSAL_GENERATOR.NAME", "BatchedRPN",
                "MODEL.ROI_HEADS.NAME", "BatchedStateROIHeads"]
# The MLP state head on the box head's shared features, trained on the sampled proposals with
# plain cross-entropy (the seed's recipe, bench_state_recipe's "reference"); the configs ship
# ConvStateHead on the input pixels.
MLP_HEAD_OPTS = ["MODEL.ROI_STATE_HEAD.NAME", "MLPStateHead", "MODEL.ROI_STATE_HEAD.IN_FEATURES", [],
                 "MODEL.ROI_STATE_HEAD.BOX_CONTEXT", 1.0,
                 "MODEL.ROI_STATE_HEAD.CLASS_CONDITIONED", False,
                 "MODEL.ROI_STATE_HEAD.TRAIN_ON", "proposals",
                 "MODEL.ROI_STATE_HEAD.LOGIT_ADJUST_TAU", 0.0,
                 "MODEL.ROI_STATE_HEAD.LOSS_WEIGHT", 0.5]
# A state head on boxes pooled from the input pixels for it alone (ConvStateHead).
POOLED_OPTS = ["MODEL.ROI_STATE_HEAD.NAME", "ConvStateHead", "MODEL.ROI_STATE_HEAD.IN_FEATURES",
               ["image"], "MODEL.ROI_STATE_HEAD.POOLER_RESOLUTION", 12,
               "MODEL.ROI_STATE_HEAD.BOX_CONTEXT", 1.2]


def make_cfg(config_file=SMALL_CONFIG, opts=()):
    cfg = get_cfg()
    add_bikestate_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(TINY_OPTS) + list(opts))
    return cfg


def random_instances(height, width, num_boxes, num_classes=22, generator=None, min_size=12):
    """``Instances`` with random ``gt_boxes``, ``gt_classes`` and ``gt_states`` (int64)."""
    g = generator
    xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([width - min_size, height - min_size])
    max_wh = torch.stack([width - xy[:, 0], height - xy[:, 1]], dim=1)
    wh = min_size + torch.rand(num_boxes, 2, generator=g) * (max_wh - min_size).clamp(min=0)
    inst = Instances((height, width))
    inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
    inst.gt_classes = torch.randint(0, num_classes, (num_boxes,), generator=g)
    inst.gt_states = torch.randint(0, 4, (num_boxes,), generator=g)
    return inst


def random_batch(num_boxes=(6, 0), height=128, width=160, seed=0):
    """Training inputs as a dataset mapper gives them; a 0 makes an image without annotations."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for n in num_boxes:
        batch.append({
            "image": torch.randint(0, 256, (3, height, width), generator=g).float(),
            "instances": random_instances(height, width, n, generator=g),
            "height": height,
            "width": width,
        })
    return batch
