"""Hand-built predictions for the report, visualizer and export tests; the small model's
config for the predictor tests."""
import os

import pytest
from detectron2.config import get_cfg

from prediction_builders import prediction_instances

from bikestate import add_bikestate_config
from bikestate.constants import PART_NAMES, STATE_IDS

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "bike_small_cpu.yaml")


def make_small_cfg(**overrides):
    """configs/bike_small_cpu.yaml on the CPU, random weights, tiny test size (128-192 px) and
    a score threshold an untrained model clears; ``overrides`` are further KEY=value."""
    cfg = get_cfg()
    add_bikestate_config(cfg)
    cfg.merge_from_file(CONFIG)
    opts = {"MODEL.DEVICE": "cpu", "MODEL.WEIGHTS": "", "INPUT.MIN_SIZE_TEST": 128,
            "INPUT.MAX_SIZE_TEST": 192, "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.01}
    opts.update(overrides)
    cfg.merge_from_list([x for kv in opts.items() for x in kv])
    return cfg


@pytest.fixture(scope="session")
def small_cfg():
    """:func:`make_small_cfg`, as a fixture (tests cannot import conftest reliably)."""
    return make_small_cfg


def make_instances(image_size, detections):
    """Instances from ``(part, box_xyxy, score, {state: probability})`` tuples.

    Missing state probabilities share what is left equally, so rows sum to 1.
    """
    boxes, scores, classes, probs = [], [], [], []
    for part, box, score, given in detections:
        row = [0.0] * len(STATE_IDS)
        for name, p in given.items():
            row[STATE_IDS[name]] = p
        rest = [i for i in range(len(row)) if not any(STATE_IDS[n] == i for n in given)]
        for i in rest:
            row[i] = (1.0 - sum(given.values())) / len(rest)
        boxes.append(box)
        scores.append(score)
        classes.append(PART_NAMES.index(part))
        probs.append(row)
    return prediction_instances(image_size, boxes, scores, classes, probs)


@pytest.fixture
def instances_factory():
    return make_instances
