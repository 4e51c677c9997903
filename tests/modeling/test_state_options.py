"""The state branch's training options: what loss_state is computed on (TRAIN_ON, shared box
features or boxes pooled for the state head alone), its loss variants, and their config checks."""
import math

import pytest
import torch
from torch.nn import functional as F

from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from bikestate.engine.trainer import prepare_training_config
from bikestate.modeling import state_loss
from bikestate.modeling.roi_heads import jitter_boxes
from bikestate.utils.errors import ConfigError

from modeling_cases import BATCHED_OPTS, MLP_HEAD_OPTS, POOLED_OPTS, make_cfg, random_batch


def build(opts=(), seed=0):
    torch.manual_seed(seed)
    # No dropout: the head gives the same logits for the same rows in both computations.
    return build_model(make_cfg(opts=["MODEL.ROI_STATE_HEAD.DROPOUT", 0.0, *opts]))


def sampled_inputs(model, batch, seed=0):
    """Images, features (with the input pixels), sampled proposals and targets of one step."""
    model.train()
    torch.manual_seed(seed)
    images = model.preprocess_image(batch)
    targets = [b["instances"] for b in batch]
    features = model.backbone(images.tensor)
    with EventStorage():
        proposals, _ = model.proposal_generator(images, features, targets)
        proposals = model.roi_heads.label_and_sample_proposals(proposals, targets)
    return dict(features, image=images.tensor), proposals, targets


def expected_state_loss(roi_heads, features, proposals, targets, train_on, jitter=0.0):
    """Cross-entropy of the head over the rows TRAIN_ON names, computed here from scratch;
    with ``jitter``, the boxes pooled here are moved by :func:`jitter_boxes` in the order the
    heads move them (proposals image by image, then ground truth), from torch's generator."""
    num_classes = roi_heads.num_classes
    groups, classes, states = [], [], []  # groups: per-image box lists, pooled together
    if train_on in ("proposals", "both"):
        fg = [p.gt_classes < num_classes for p in proposals]
        groups.append([p.proposal_boxes[f] for p, f in zip(proposals, fg)])
        classes += [p.gt_classes[f] for p, f in zip(proposals, fg)]
        states += [p.gt_states[f] if p.has("gt_states") else torch.zeros(int(f.sum()),
                                                                          dtype=torch.int64)
                   for p, f in zip(proposals, fg)]
    if train_on in ("gt_boxes", "both"):
        groups.append([t.gt_boxes for t in targets])
        classes += [t.gt_classes for t in targets]
        states += [t.gt_states for t in targets]
    inputs = []
    for k, boxes in enumerate(groups):
        ground_truth = train_on != "proposals" and k == len(groups) - 1
        if jitter and (roi_heads.state_pooler is not None or ground_truth):
            boxes = [jitter_boxes(b, jitter) for b in boxes]
        if roi_heads.state_pooler is not None:
            inputs.append(roi_heads._pool_for_state(features, boxes))
        else:
            box_in = [features[f] for f in roi_heads.box_in_features]
            inputs.append(roi_heads.box_head(roi_heads.box_pooler(box_in, boxes)))
    inputs = torch.cat(inputs)
    classes, states = torch.cat(classes), torch.cat(states)
    assert len(inputs) == len(states) > 0
    return F.cross_entropy(roi_heads.state_head(inputs, classes), states), len(states)


@pytest.mark.parametrize("batched", [False, True], ids=["per_image", "batched"])
@pytest.mark.parametrize("pooled", [False, True], ids=["box_features", "pooled_image"])
@pytest.mark.parametrize("train_on", ["proposals", "gt_boxes", "both"])
def test_loss_state_is_cross_entropy_over_the_chosen_rows(train_on, pooled, batched):
    """Also with the batched target assignment (BatchedStateROIHeads samples the proposals)."""
    opts = ["MODEL.ROI_STATE_HEAD.TRAIN_ON", train_on, "MODEL.ROI_STATE_HEAD.LOSS_WEIGHT", 1.0]
    model = build(opts + (POOLED_OPTS if pooled else []) + (BATCHED_OPTS if batched else []))
    assert type(model.roi_heads).__name__ == ("BatchedStateROIHeads" if batched
                                              else "StateROIHeads")
    batch = random_batch(num_boxes=(6, 0))
    features, proposals, targets = sampled_inputs(model, batch)
    with EventStorage():
        loss = model.roi_heads._forward_box(features, proposals, targets)["loss_state"]
    expected, num_rows = expected_state_loss(model.roi_heads, features, proposals, targets,
                                             train_on)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    num_fg = sum(int((p.gt_classes < 22).sum()) for p in proposals)
    assert num_rows == {"proposals": num_fg, "gt_boxes": 6, "both": num_fg + 6}[train_on]


@pytest.mark.parametrize("pooled", [False, True], ids=["box_features", "pooled_image"])
@pytest.mark.parametrize("train_on", ["proposals", "gt_boxes", "both"])
def test_loss_state_pools_moved_boxes_with_train_box_jitter(train_on, pooled):
    """TRAIN_BOX_JITTER moves every box loss_state pools itself (the proposals of a head on the
    shared box features are pooled before and stay): the loss is the cross-entropy over the
    moved boxes, and differs from the loss over the boxes as they are."""
    opts = ["MODEL.ROI_STATE_HEAD.TRAIN_ON", train_on, "MODEL.ROI_STATE_HEAD.LOSS_WEIGHT", 1.0,
            "MODEL.ROI_STATE_HEAD.TRAIN_BOX_JITTER", 0.3]
    model = build((POOLED_OPTS if pooled else MLP_HEAD_OPTS) + opts)
    assert (model.roi_heads.state_pooler is not None) == pooled
    batch = random_batch(num_boxes=(6, 0))
    features, proposals, targets = sampled_inputs(model, batch)
    torch.manual_seed(7)
    with EventStorage():
        loss = model.roi_heads._forward_box(features, proposals, targets)["loss_state"]
    torch.manual_seed(7)
    moved, _ = expected_state_loss(model.roi_heads, features, proposals, targets, train_on,
                                   jitter=0.3)
    torch.manual_seed(7)
    still, _ = expected_state_loss(model.roi_heads, features, proposals, targets, train_on)
    assert loss.item() == pytest.approx(moved.item(), rel=1e-5, abs=1e-6)
    if train_on == "proposals" and not pooled:
        assert loss.item() == pytest.approx(still.item(), rel=1e-5, abs=1e-6)
    else:
        assert abs(loss.item() - still.item()) > 1e-4


def test_jitter_boxes_moves_each_side_by_the_given_share_of_the_box():
    boxes = Boxes(torch.tensor([[10.0, 20.0, 110.0, 70.0]]).repeat(20000, 1))
    generator = torch.Generator().manual_seed(0)
    moved = jitter_boxes(boxes, 0.1, generator=generator).tensor
    shift = (moved - boxes.tensor) / torch.tensor([100.0, 50.0, 100.0, 50.0])
    assert shift.mean(dim=0).abs().max() < 0.005
    assert torch.allclose(shift.std(dim=0), torch.full((4,), 0.1), atol=0.005)
    # Sides stay in order and 1 pixel apart, even for a box moved by more than its size.
    tiny = jitter_boxes(Boxes(torch.tensor([[5.0, 5.0, 6.0, 6.0]]).repeat(1000, 1)), 3.0).tensor
    assert bool(((tiny[:, 2:] - tiny[:, :2]) >= 1.0 - 1e-5).all())
    assert torch.equal(jitter_boxes(boxes, 0.0).tensor, boxes.tensor)


def test_pooled_state_head_reads_the_final_detection_boxes():
    """At inference the state comes from each detection's own box, pooled from the pixels."""
    model = build(POOLED_OPTS)
    model.eval()
    batch = random_batch(num_boxes=(0, 0), seed=5)
    with torch.no_grad():
        outputs = model(batch)
        images = model.preprocess_image(batch)
        features = dict(model.backbone(images.tensor), image=images.tensor)
        resized = []
        for out, item in zip(outputs, batch):
            # detector_postprocess scaled boxes to the requested size; go back to input pixels.
            inst = out["instances"]
            scale = images.image_sizes[0][1] / item["width"]
            given = type(inst)(images.image_sizes[0])
            given.pred_boxes = Boxes(inst.pred_boxes.tensor * scale)
            given.pred_classes = inst.pred_classes
            resized.append(given)
        again = model.roi_heads.forward_with_given_boxes(features, resized)
    for out, inst in zip(outputs, again):
        assert len(inst) > 0
        assert torch.allclose(out["instances"].state_scores, inst.state_scores, atol=1e-4)


def test_state_loss_variants_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    states = torch.tensor([0, 1])
    ce = F.cross_entropy(logits, states, reduction="none")
    # Focal: (1 - p_true)^gamma x CE, averaged.
    p_true = torch.exp(-ce)
    focal = ((1 - p_true) ** 2 * ce).mean()
    assert state_loss(logits, states, focal_gamma=2.0).item() == pytest.approx(focal.item())
    # Logit adjustment: tau x log prior added before the cross-entropy.
    prior = torch.tensor([0.6, 0.06, 0.2, 0.14])
    adjusted = F.cross_entropy(logits + prior.log(), states)
    assert state_loss(logits, states, logit_adjustment=prior.log()).item() == pytest.approx(
        adjusted.item())
    # The rare state must win by a margin: its loss grows, the frequent one's shrinks.
    assert F.cross_entropy((logits + prior.log())[1:], states[1:]) > F.cross_entropy(
        logits[1:], states[1:])


def test_prior_weights_and_adjustment_from_config():
    prior = [0.6, 0.06, 0.2, 0.14]
    model = build(["MODEL.ROI_STATE_HEAD.STATE_PRIOR", prior,
                   "MODEL.ROI_STATE_HEAD.AUTO_LOSS_WEIGHTS", True,
                   "MODEL.ROI_STATE_HEAD.LOGIT_ADJUST_TAU", 0.5])
    heads = model.roi_heads
    weights = torch.tensor(heads.state_class_weights)
    expected = torch.tensor(prior) ** -0.5
    assert torch.allclose(weights, expected / (expected * torch.tensor(prior)).sum())
    assert weights[1] / weights[0] == pytest.approx(math.sqrt(0.6 / 0.06))
    assert torch.allclose(heads.state_logit_adjustment, 0.5 * torch.tensor(prior).log())


def test_training_fills_the_prior_from_the_training_boxes():
    name = "state_prior_test"
    states = [0] * 6 + [1] * 1 + [2] * 2 + [3] * 1
    DatasetCatalog.register(name, lambda: [{"annotations": [{"state": s} for s in states]}])
    try:
        cfg = make_cfg(opts=["DATASETS.TRAIN", (name,), "MODEL.ROI_STATE_HEAD.LOGIT_ADJUST_TAU",
                             1.0])
        notices = prepare_training_config(cfg)
    finally:
        DatasetCatalog.remove(name)
    # Counts + 0.5 each (no share is ever 0): 6.5, 1.5, 2.5, 1.5 of 12.
    assert cfg.MODEL.ROI_STATE_HEAD.STATE_PRIOR == pytest.approx([6.5 / 12, 1.5 / 12,
                                                                  2.5 / 12, 1.5 / 12])
    assert any("STATE_PRIOR" in n for n in notices)


@pytest.mark.parametrize("opts, message", [
    (["MODEL.ROI_STATE_HEAD.TRAIN_ON", "everything"], "TRAIN_ON must be one of"),
    (["MODEL.ROI_STATE_HEAD.TRAIN_BOX_JITTER", -0.1], "TRAIN_BOX_JITTER must be >= 0"),
    (["MODEL.ROI_STATE_HEAD.IN_FEATURES", ["p9"]], "p9 unknown"),
    (["MODEL.ROI_STATE_HEAD.IN_FEATURES", ["image", "p3"]], "same number of channels"),
    (POOLED_OPTS + ["MODEL.ROI_STATE_HEAD.BOX_CONTEXT", 0.5], "BOX_CONTEXT must be >= 1"),
    (["MODEL.ROI_STATE_HEAD.STATE_PRIOR", [0.5, 0.5]], "STATE_PRIOR must be 4"),
    (["MODEL.ROI_STATE_HEAD.AUTO_LOSS_WEIGHTS", True,
      "MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS", [1.0, 2.0, 1.0, 1.0]], "not both"),
])
def test_bad_state_options_are_config_errors(opts, message):
    with pytest.raises(ConfigError, match=message):
        build(opts)


def test_conv_state_head_needs_pooled_boxes():
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build(["MODEL.ROI_STATE_HEAD.NAME", "ConvStateHead", "MODEL.ROI_STATE_HEAD.IN_FEATURES", []])
