"""The state branch learns, from scratch, on an easy SynthBikes subset within ~1-2 minutes of CPU.

"Easy" here means: 320x240 pictures, states drawn only from intact / absent / occluded in equal
shares (always answering one state scores ~0.4), boxes of at least 16 px, and only the ROI part
of the model trained: the backbone keeps its random initialisation (a from-scratch backbone
needs far more than two CPU minutes) and its FPN features of the ground-truth boxes are pooled
once; the box head and the state head of the small CPU config are trained on them with the real
state loss, as the ROI heads see the GT boxes they append to the proposals.

What must happen, or the test fails:
* the model's own ``loss_state`` (full training forward: proposals, sampling, gt_states
  inherited from matched GT) falls on a fixed batch;
* ``forward_with_given_boxes`` (the inference path: eval mode, no dropout) gives the training
  pictures' GT boxes the right state more than 80% of the time;
* on held-out pictures it does clearly better than always answering the most frequent state,
  so what was learnt is the link between pixels and states, not an artefact of the pipeline.
"""
import json
import os

import cv2
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from bikestate.constants import PART_NAMES, STATE_ABSENT, STATE_INTACT, STATE_OCCLUDED
from bikestate.modeling import state_loss

from modeling_cases import MLP_HEAD_OPTS, make_cfg

SEED = 1234
IMAGE_SIZE = (320, 240)
STATE_PROBS = (1 / 3, 0.0, 1 / 3, 1 / 3)  # intact, damaged, absent, occluded
MIN_BOX_SIDE = 16
NUM_TRAIN, NUM_HELD_OUT = 48, 8
NUM_CHECKED = 8  # training pictures whose accuracy is measured (each costs a forward)
STEPS, BOXES_PER_STEP = 120, 128
TARGET_ACCURACY = 0.8
HELD_OUT_MARGIN = 0.1  # over the majority-state rate


def load_delftbikes(json_path):
    """(image BGR tensor, Instances with gt_boxes/gt_classes/gt_states) per picture."""
    with open(json_path, encoding="utf-8") as f:
        annotations = json.load(f)
    images_dir = os.path.join(os.path.dirname(json_path), "images")
    samples = []
    for file_name, record in sorted(annotations.items()):
        image = cv2.imread(os.path.join(images_dir, file_name), cv2.IMREAD_COLOR)
        assert image is not None, file_name
        boxes, classes, states = [], [], []
        for part_name, part in record["parts"].items():
            b = part["absolute_bounding_box"]
            if b["width"] < MIN_BOX_SIDE or b["height"] < MIN_BOX_SIDE:
                continue
            boxes.append([b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]])
            classes.append(PART_NAMES.index(part_name))
            states.append(part["object_state_class"])
        inst = Instances(image.shape[:2])
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
        inst.gt_states = torch.tensor(states, dtype=torch.int64)
        samples.append((torch.as_tensor(image.transpose(2, 0, 1).copy()).float(), inst))
    return samples


def pooled_gt_box_features(model, samples, chunk=4):
    """(R, C, 7, 7) pooled FPN features of every GT box, computed once (frozen backbone)."""
    roi_heads = model.roi_heads
    pooled = []
    with torch.no_grad():
        for i in range(0, len(samples), chunk):
            part = samples[i:i + chunk]
            images = model.preprocess_image([{"image": img} for img, _ in part])
            features = model.backbone(images.tensor)
            pooled.append(roi_heads.box_pooler([features[f] for f in roi_heads.box_in_features],
                                               [inst.gt_boxes for _, inst in part]))
    return torch.cat(pooled)


def model_loss_state(model, samples):
    """``loss_state`` of the full training forward on ``samples``, with fixed sampling/dropout."""
    model.train()
    torch.manual_seed(SEED)
    with torch.no_grad(), EventStorage():
        return model([{"image": img, "instances": inst} for img, inst in samples])[
            "loss_state"].item()


def accuracy_on_gt_boxes(model, samples):
    """Accuracy of ``pred_states`` that forward_with_given_boxes gives the GT boxes."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for img, inst in samples:
            given = Instances(inst.image_size, pred_boxes=inst.gt_boxes,
                              pred_classes=inst.gt_classes)
            out = model.inference([{"image": img}], [given], do_postprocess=False)[0]
            correct += (out.pred_states == inst.gt_states).sum().item()
            total += len(inst)
    model.train()
    return correct / total


@pytest.fixture(scope="module")
def easy_synthbikes(tmp_path_factory):
    from bikestate.synth import generate_synthbikes

    root = tmp_path_factory.mktemp("easy_synthbikes")
    train = generate_synthbikes(str(root / "train"), NUM_TRAIN, seed=21, image_size=IMAGE_SIZE,
                                state_probs=STATE_PROBS, show_progress=False)
    held_out = generate_synthbikes(str(root / "val"), NUM_HELD_OUT, seed=22,
                                   image_size=IMAGE_SIZE, state_probs=STATE_PROBS,
                                   show_progress=False)
    return load_delftbikes(train), load_delftbikes(held_out)


def test_state_branch_learns_states_of_ground_truth_boxes(easy_synthbikes):
    train, held_out = easy_synthbikes
    held_out_states = torch.cat([inst.gt_states for _, inst in held_out])
    assert set(held_out_states.tolist()) <= {STATE_INTACT, STATE_ABSENT, STATE_OCCLUDED}
    majority = held_out_states.bincount().max().item() / len(held_out_states)
    assert majority < 0.5, "the held-out set must not be solvable by always saying one state"

    torch.manual_seed(SEED)
    cfg = make_cfg(opts=MLP_HEAD_OPTS)  # the MLP head on the shared box features
    model = build_model(cfg)
    roi_heads = model.roi_heads
    loss_before = model_loss_state(model, train[:2])
    accuracy_before = accuracy_on_gt_boxes(model, train[:NUM_CHECKED])

    pooled = pooled_gt_box_features(model, train)
    classes = torch.cat([inst.gt_classes for _, inst in train])
    states = torch.cat([inst.gt_states for _, inst in train])
    params = list(roi_heads.box_head.parameters()) + list(roi_heads.state_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR,
                                  weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(STEPS):
        rows = torch.randperm(len(pooled), generator=generator)[:BOXES_PER_STEP]
        logits = roi_heads.state_head(roi_heads.box_head(pooled[rows]), classes[rows])
        loss = state_loss(logits, states[rows], roi_heads.state_class_weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    loss_after = model_loss_state(model, train[:2])
    accuracy_after = accuracy_on_gt_boxes(model, train[:NUM_CHECKED])
    held_out_accuracy = accuracy_on_gt_boxes(model, held_out)
    print(f"loss_state {loss_before:.3f} -> {loss_after:.3f}; accuracy on the training "
          f"pictures {accuracy_before:.3f} -> {accuracy_after:.3f}; held out "
          f"{held_out_accuracy:.3f} (majority state {majority:.3f})")
    assert loss_after < 0.5 * loss_before, "loss_state did not fall"
    assert accuracy_after > TARGET_ACCURACY
    assert held_out_accuracy > majority + HELD_OUT_MARGIN


# The pooled-pixels state head on all four states in equal shares, damaged included.
POOLED_OPTS = ["MODEL.ROI_STATE_HEAD.NAME", "ConvStateHead",
               "MODEL.ROI_STATE_HEAD.IN_FEATURES", ["image"],
               "MODEL.ROI_STATE_HEAD.BOX_CONTEXT", 1.15,
               "MODEL.ROI_STATE_HEAD.TRAIN_ON", "both"]
ALL_STATES = (0.25, 0.25, 0.25, 0.25)
POOLED_STEPS = 150
# Pictures of the four-state set: ~950 training and ~340 held-out boxes, so that a held-out
# recall (~85 boxes per state) is not at the mercy of a few boxes.
POOLED_TRAIN, POOLED_HELD_OUT = 96, 32
HELD_OUT_RECALL = 0.5  # per state, chance is 0.25


@pytest.fixture(scope="module")
def four_state_synthbikes(tmp_path_factory):
    from bikestate.synth import generate_synthbikes

    root = tmp_path_factory.mktemp("four_state_synthbikes")
    train = generate_synthbikes(str(root / "train"), POOLED_TRAIN, seed=31,
                                image_size=IMAGE_SIZE, state_probs=ALL_STATES,
                                show_progress=False)
    held_out = generate_synthbikes(str(root / "val"), POOLED_HELD_OUT, seed=32,
                                   image_size=IMAGE_SIZE, state_probs=ALL_STATES,
                                   show_progress=False)
    return load_delftbikes(train), load_delftbikes(held_out)


def pooled_gt_boxes(model, samples):
    """(R, 3, P, P) every GT box pooled from the normalized pixels, as the state head reads
    them (no backbone: the head pools the input image)."""
    with torch.no_grad():
        images = model.preprocess_image([{"image": img} for img, _ in samples])
        return model.roi_heads._pool_for_state({"image": images.tensor},
                                               [inst.gt_boxes for _, inst in samples])


def test_pooled_state_head_learns_every_state_damaged_included(four_state_synthbikes):
    from bikestate.constants import STATE_NAMES

    train, held_out = four_state_synthbikes
    torch.manual_seed(SEED)
    cfg = make_cfg(opts=POOLED_OPTS)
    model = build_model(cfg)
    roi_heads = model.roi_heads
    loss_before = model_loss_state(model, train[:2])

    crops = pooled_gt_boxes(model, train)
    classes = torch.cat([inst.gt_classes for _, inst in train])
    states = torch.cat([inst.gt_states for _, inst in train])
    assert states.bincount(minlength=4).min() > 0.15 * len(states)  # damaged is there too
    optimizer = torch.optim.AdamW(roi_heads.state_head.parameters(), lr=cfg.SOLVER.BASE_LR,
                                  weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(POOLED_STEPS):
        rows = torch.randperm(len(crops), generator=generator)[:BOXES_PER_STEP]
        loss = state_loss(roi_heads.state_head(crops[rows], classes[rows]), states[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss_after = model_loss_state(model, train[:2])

    # Held out, through the inference path (forward_with_given_boxes pools the same way).
    model.eval()
    predicted, truth = [], []
    with torch.no_grad():
        for img, inst in held_out:
            given = Instances(inst.image_size, pred_boxes=inst.gt_boxes,
                              pred_classes=inst.gt_classes)
            images = model.preprocess_image([{"image": img}])
            features = dict(model.backbone(images.tensor), image=images.tensor)
            predicted.append(roi_heads.forward_with_given_boxes(features, [given])[0].pred_states)
            truth.append(inst.gt_states)
    predicted, truth = torch.cat(predicted), torch.cat(truth)
    recall = {name: ((predicted == s) & (truth == s)).sum().item() / (truth == s).sum().item()
              for s, name in enumerate(STATE_NAMES)}
    print(f"loss_state {loss_before:.3f} -> {loss_after:.3f}; held-out recall per state "
          + ", ".join(f"{k} {v:.2f}" for k, v in recall.items()))
    assert loss_after < 0.7 * loss_before, "loss_state did not fall"
    for name, value in recall.items():
        assert value > HELD_OUT_RECALL, f"held-out recall of {name}: {value:.2f}"
