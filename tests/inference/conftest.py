"""Hand-built predictions for the report, visualizer and export tests."""
import pytest
import torch
from detectron2.structures import Boxes, Instances

from bikestate.constants import PART_NAMES, STATE_IDS


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
    inst = Instances(image_size)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    inst.state_scores = torch.tensor(probs, dtype=torch.float32).reshape(-1, len(STATE_IDS))
    inst.pred_states = inst.state_scores.argmax(dim=1) if len(probs) else torch.zeros(
        0, dtype=torch.int64)
    return inst


@pytest.fixture
def instances_factory():
    return make_instances
