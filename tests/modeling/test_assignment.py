"""Batched training-target assignment against detectron2's per-image assignment, on CPU.

What is deterministic (IoU, matches, matcher labels, matched boxes, sample sizes, the gt_*
fields a sampled proposal inherits, the logged counts, the RPN losses) must be detectron2's
exactly. Which anchors and proposals are sampled is random: over many draws with fixed seeds,
the per-ground-truth frequencies of the sampled positives (and where the negatives come from)
must agree with detectron2's and with the exact expectation of uniform sampling, by a
chi-square bound at p = 0.001 (the tests are deterministic: same seeds, same draws).
"""
import math
import statistics

import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from bikestate.engine.solver import build_optimizer
from bikestate.modeling import BatchedRPN, BatchedStateROIHeads, StateROIHeads
from bikestate.modeling.assignment import (batched_match, batched_pairwise_iou,
                                           batched_subsample_labels, pad_boxes, sampled_mask)

from modeling_cases import (BATCHED_OPTS, POOLED_OPTS, make_cfg, random_batch,
                            random_instances)

HEIGHT, WIDTH = 128, 160
# FPN levels of the small config (P3-P6, 64 channels).
SHAPES = {f"p{level}": ShapeSpec(channels=64, stride=2 ** level) for level in (3, 4, 5, 6)}


# ------------------------------------------------------------------------------ cases


def targets_batch(seed=0):
    """Ground truth of four images: 22 random parts; none; ties (a box repeated, so two rows
    have the same IoU everywhere); one 2-pixel box outside the image, which overlaps no anchor
    (its best IoU is 0: detectron2's low-quality matching then labels every anchor it does not
    overlap positive, and that must be reproduced too)."""
    g = torch.Generator().manual_seed(seed)
    full = random_instances(HEIGHT, WIDTH, 22, generator=g)
    empty = random_instances(HEIGHT, WIDTH, 0, generator=g)
    ties = random_instances(HEIGHT, WIDTH, 5, generator=g)
    ties.gt_boxes.tensor[3] = ties.gt_boxes.tensor[1]
    far = random_instances(HEIGHT, WIDTH, 1, generator=g)
    far.gt_boxes = Boxes(torch.tensor([[900.0, 900.0, 902.0, 902.0]]))
    return [full, empty, ties, far]


def anchors_of(rpn):
    features = [torch.zeros(1, 64, math.ceil(HEIGHT / s.stride), math.ceil(WIDTH / s.stride))
                for s in SHAPES.values()]
    return rpn.anchor_generator(features)


def build_rpn(opts=()):
    return build_proposal_generator(make_cfg(opts=list(opts)), SHAPES)


def build_heads(opts=()):
    torch.manual_seed(0)
    return build_roi_heads(make_cfg(opts=list(opts)), SHAPES)


def proposals_for(targets, num_random=200, jittered=8, seed=1):
    """Random proposals plus ``jittered`` shifted copies of every ground-truth box (so many
    proposals are foreground). ``objectness_logits`` numbers the rows (0, 1, 2, ...)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in targets:
        boxes = [random_instances(HEIGHT, WIDTH, num_random, generator=g).gt_boxes.tensor]
        gt = t.gt_boxes.tensor
        for _ in range(jittered):
            wh = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
            boxes.append(gt + (torch.rand(gt.shape, generator=g) - 0.5) * 0.3 * wh)
        boxes = torch.cat(boxes)
        out.append(Instances((HEIGHT, WIDTH), proposal_boxes=Boxes(boxes),
                             objectness_logits=torch.arange(len(boxes), dtype=torch.float32)))
    return out


def chi2_bound(dof, z=3.09):
    """0.999 quantile of the chi-square distribution (Wilson-Hilferty; z = normal 0.999)."""
    a = 2.0 / (9.0 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def assert_frequencies_agree(batched, reference, expected):
    """Counts per category from the batched and the detectron2 sampler (same number of draws):
    both fit the exact expectation and each other (chi-square, p = 0.001). Without-replacement
    sampling varies less than the multinomial the statistic assumes: the bound is conservative.
    """
    batched, reference, expected = (torch.as_tensor(x, dtype=torch.float64)
                                    for x in (batched, reference, expected))
    assert batched.sum() == reference.sum() == pytest.approx(expected.sum().item())
    used = expected > 0
    assert (batched[~used] == 0).all() and (reference[~used] == 0).all()
    dof = int(used.sum()) - 1
    assert dof >= 5, "too few categories to say anything"
    for counts in (batched, reference):
        stat = ((counts[used] - expected[used]) ** 2 / expected[used]).sum().item()
        assert stat < chi2_bound(dof), (stat, chi2_bound(dof))
    both = batched[used] + reference[used]
    stat = ((batched[used] - reference[used]) ** 2 / both).sum().item()
    assert stat < chi2_bound(dof), (stat, chi2_bound(dof))


# ------------------------------------------------------------------------------ functions


def test_batched_pairwise_iou_is_pairwise_iou_bit_for_bit():
    targets = targets_batch()
    proposals = proposals_for(targets)
    gt, gt_valid = pad_boxes([t.gt_boxes.tensor for t in targets], min_length=1)
    boxes, valid = pad_boxes([p.proposal_boxes.tensor for p in proposals])
    assert gt.shape == (4, 22, 4) and boxes.shape[1] == max(len(p) for p in proposals)
    assert gt_valid.sum(dim=1).tolist() == [len(t) for t in targets]
    iou = batched_pairwise_iou(gt, boxes)
    for i, (t, p) in enumerate(zip(targets, proposals)):
        assert torch.equal(iou[i, : len(t), : len(p)], pairwise_iou(t.gt_boxes, p.proposal_boxes))
    # Anchors shared by every image broadcast.
    anchors = Boxes.cat(anchors_of(build_rpn()))
    iou = batched_pairwise_iou(gt, anchors.tensor)
    for i, t in enumerate(targets):
        assert torch.equal(iou[i, : len(t)], pairwise_iou(t.gt_boxes, anchors))


@pytest.mark.parametrize("matcher", [
    Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),  # the RPN's
    Matcher([0.5], [0, 1], allow_low_quality_matches=False),  # the ROI heads'
    Matcher([0.4, 0.5], [-1, 0, 1], allow_low_quality_matches=True),
], ids=["rpn", "roi_heads", "other"])
def test_batched_match_is_the_matcher(matcher):
    targets = targets_batch()
    anchors = Boxes.cat(anchors_of(build_rpn()))
    gt, gt_valid = pad_boxes([t.gt_boxes.tensor for t in targets], min_length=1)
    matches, labels = batched_match(matcher, batched_pairwise_iou(gt, anchors.tensor), gt_valid)
    assert matches.dtype == torch.int64 and labels.dtype == torch.int8
    for i, t in enumerate(targets):
        expected_matches, expected_labels = matcher(pairwise_iou(t.gt_boxes, anchors))
        assert torch.equal(matches[i], expected_matches), i
        assert torch.equal(labels[i], expected_labels), i
    if matcher.allow_low_quality_matches:
        # The far box's quirk is there: most anchors are positive in image 3.
        assert (labels[3] == 1).float().mean() > 0.9


def test_batch_without_any_ground_truth():
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    anchors = Boxes.cat(anchors_of(build_rpn()))
    gt, gt_valid = pad_boxes([torch.zeros(0, 4), torch.zeros(0, 4)], min_length=1)
    matches, labels = batched_match(matcher, batched_pairwise_iou(gt, anchors.tensor), gt_valid)
    expected_matches, expected_labels = matcher(pairwise_iou(Boxes(torch.zeros(0, 4)), anchors))
    for i in range(2):
        assert torch.equal(matches[i], expected_matches)
        assert torch.equal(labels[i], expected_labels)


def test_padded_rows_never_match():
    """Whatever quality a padded row holds, it is never matched (nor low-quality matched)."""
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    quality = torch.tensor([[[0.1, 0.8, 0.0], [0.9, 0.9, 0.9]],   # image 0: row 1 is padding
                            [[0.5, 0.5, 0.5], [0.2, 0.1, 0.0]]])  # image 1: no real row
    gt_valid = torch.tensor([[True, False], [False, False]])
    matches, labels = batched_match(matcher, quality, gt_valid)
    assert matches.tolist() == [[0, 0, 0], [0, 0, 0]]
    assert labels.tolist() == [[0, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("counts", [
    (300, 5000, 0), (3, 5000, 10), (0, 5000, 0), (300, 40, 0), (0, 0, 100), (50, 50, 50)],
    ids=["many", "few_positives", "no_positives", "few_negatives", "all_ignored", "small"])
@pytest.mark.parametrize("bg_label", [0, 22])
def test_sample_sizes_are_subsample_labels(counts, bg_label):
    """Per image: min(#fg, int(num * fraction)) positives, the rest negatives, as detectron2."""
    num_pos, num_neg, num_ignored = counts
    g = torch.Generator().manual_seed(3)
    fg_label = 1 if bg_label == 0 else 7
    labels = torch.cat([torch.full((num_pos,), fg_label), torch.full((num_neg,), bg_label),
                        torch.full((num_ignored,), -1)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    batch = torch.stack([labels, labels.flip(0)])
    pos_idx, got_pos, neg_idx, got_neg = batched_subsample_labels(batch, 256, 0.25, bg_label, g)
    pos_mask = sampled_mask(pos_idx, got_pos, batch.shape[1])
    neg_mask = sampled_mask(neg_idx, got_neg, batch.shape[1])
    for i in range(2):
        ref_pos, ref_neg = subsample_labels(batch[i], 256, 0.25, bg_label)
        assert int(got_pos[i]) == len(ref_pos) and int(got_neg[i]) == len(ref_neg)
        assert int(pos_mask[i].sum()) == len(ref_pos) and int(neg_mask[i].sum()) == len(ref_neg)
        assert (batch[i][pos_mask[i]] == fg_label).all()
        assert (batch[i][neg_mask[i]] == bg_label).all()


@pytest.mark.parametrize("bg_label", [0, 22])
def test_sampling_distribution_is_subsample_labels(bg_label):
    """2,000 draws of one image whose 528 positives belong to 22 ground-truth boxes (3 to 45
    each) among 5,000 negatives: sampled positives per box and negatives per region of the
    label vector agree with detectron2's sampler and with uniform sampling."""
    draws, num_samples, fraction = 2000, 256, 0.5
    owners = torch.cat([torch.full((3 + 2 * k,), k) for k in range(22)])
    labels = torch.cat([torch.ones(len(owners), dtype=torch.int64) if bg_label == 0 else owners,
                        torch.full((5000,), bg_label), torch.full((300,), -1)])
    owner = torch.cat([owners, torch.full((5300,), -1)])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    labels, owner = labels[order], owner[order]
    region = torch.arange(len(labels)) * 10 // len(labels)  # ten stretches of the vector

    pos_idx, num_pos, neg_idx, num_neg = batched_subsample_labels(
        labels.expand(draws, -1), num_samples, fraction, bg_label,
        torch.Generator().manual_seed(1))
    assert (num_pos == 128).all() and (num_neg == 128).all()
    sampled_pos, sampled_neg = pos_idx[:, :128].flatten(), neg_idx[:, :128].flatten()
    assert len(set(pos_idx[0, :128].tolist())) == 128
    batched = (torch.bincount(owner[sampled_pos], minlength=22),
               torch.bincount(region[sampled_neg], minlength=10))

    torch.manual_seed(2)
    ref_pos, ref_neg = [], []
    for _ in range(draws):
        p, n = subsample_labels(labels, num_samples, fraction, bg_label)
        assert len(p) == 128 and len(n) == 128
        ref_pos.append(p)
        ref_neg.append(n)
    reference = (torch.bincount(owner[torch.cat(ref_pos)], minlength=22),
                 torch.bincount(region[torch.cat(ref_neg)], minlength=10))

    per_owner = torch.bincount(owners, minlength=22).double()
    negatives = torch.bincount(region[labels == bg_label], minlength=10).double()
    expected = (draws * 128 * per_owner / per_owner.sum(),
                draws * 128 * negatives / negatives.sum())
    for b, r, e in zip(batched, reference, expected):
        assert_frequencies_agree(b, r, e)


# ------------------------------------------------------------------------------ RPN


@pytest.mark.parametrize("boundary", [-1, 0])
def test_batched_rpn_targets_are_detectron2s(boundary):
    opts = ["MODEL.RPN.BOUNDARY_THRESH", boundary]
    rpn, batched = build_rpn(opts), build_rpn(opts + BATCHED_OPTS)
    assert type(rpn).__name__ == "RPN" and isinstance(batched, BatchedRPN)
    anchors, targets = anchors_of(rpn), targets_batch()
    torch.manual_seed(0)
    ref_labels, ref_boxes = rpn.label_and_sample_anchors(anchors, targets)
    torch.manual_seed(0)
    labels, boxes = batched.label_and_sample_anchors(anchors, targets)
    matched_labels, _ = batched.match_anchors(anchors, targets)
    all_anchors = Boxes.cat(anchors)
    for i, t in enumerate(targets):
        assert torch.equal(boxes[i], ref_boxes[i]), i
        assert labels[i].dtype == ref_labels[i].dtype == torch.int8
        # Before sampling: the matcher's labels, -1 outside the image with a boundary.
        _, expected = rpn.anchor_matcher(pairwise_iou(t.gt_boxes, all_anchors))
        if boundary >= 0:
            expected[~all_anchors.inside_box(t.image_size, boundary)] = -1
        assert torch.equal(matched_labels[i], expected), i
        # After sampling: detectron2's sample sizes, drawn from the right labels.
        for value in (1, 0):
            assert int((labels[i] == value).sum()) == int((ref_labels[i] == value).sum())
            assert (expected[labels[i] == value] == value).all()
    assert int((labels[0] == 1).sum()) > 0 and int((labels[1] == 1).sum()) == 0


def test_batched_rpn_sampling_distribution_is_detectron2s():
    """One image, 1,000 draws (the batched RPN takes them as one batch of 1,000 copies): the
    sampled positive anchors per ground-truth box match detectron2's RPN."""
    draws = 1000
    opts = ["MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32, "MODEL.RPN.POSITIVE_FRACTION", 0.25]
    rpn, batched = build_rpn(opts), build_rpn(opts + BATCHED_OPTS)
    anchors, target = anchors_of(rpn), targets_batch()[0]
    owner, matcher_labels = rpn.anchor_matcher(pairwise_iou(target.gt_boxes, Boxes.cat(anchors)))
    num_positive = int((matcher_labels == 1).sum())
    assert num_positive > 8  # more positives than the 8 sampled: the choice is random

    torch.manual_seed(0)
    labels, _ = batched.label_and_sample_anchors(anchors, [target] * draws)
    labels = torch.stack(labels)
    torch.manual_seed(1)
    reference = torch.stack([rpn.label_and_sample_anchors(anchors, [target])[0][0]
                             for _ in range(draws)])
    assert torch.equal((labels == 1).sum(dim=1), (reference == 1).sum(dim=1))
    assert torch.equal((labels == 0).sum(dim=1), (reference == 0).sum(dim=1))
    per_owner = torch.bincount(owner[matcher_labels == 1], minlength=22).double()
    assert_frequencies_agree(
        torch.bincount(owner.expand(draws, -1)[labels == 1], minlength=22),
        torch.bincount(owner.expand(draws, -1)[reference == 1], minlength=22),
        draws * 8 * per_owner / num_positive)


def test_batched_rpn_losses_are_detectron2s():
    rpn, batched = build_rpn(), build_rpn(BATCHED_OPTS)
    anchors, targets = anchors_of(rpn), targets_batch()
    torch.manual_seed(0)
    gt_labels, gt_boxes = batched.label_and_sample_anchors(anchors, targets)
    num_anchors = len(Boxes.cat(anchors))
    g = torch.Generator().manual_seed(4)
    sizes = [len(a) for a in anchors]
    logits = torch.randn(len(targets), num_anchors, generator=g, requires_grad=True)
    deltas = torch.randn(len(targets), num_anchors, 4, generator=g, requires_grad=True)
    results = []
    for model in (rpn, batched):
        with EventStorage() as storage:
            losses = model.losses(anchors, list(logits.split(sizes, dim=1)), gt_labels,
                                  list(deltas.split(sizes, dim=1)), gt_boxes)
            stats = {k: v[0] for k, v in storage.latest().items()}
        grads = torch.autograd.grad(sum(losses.values()), (logits, deltas))
        results.append((losses, stats, grads))
    (ref_losses, ref_stats, ref_grads), (losses, stats, grads) = results
    assert stats == ref_stats
    assert set(losses) == set(ref_losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    for k in losses:
        torch.testing.assert_close(losses[k], ref_losses[k], rtol=1e-5, atol=0)
    for grad, ref in zip(grads, ref_grads):
        assert torch.isfinite(grad).all()  # the image without ground truth has infinite deltas
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------ ROI heads


def _rows_of(sampled_boxes, all_boxes):
    """Row of ``all_boxes`` holding each sampled box (the first, for repeated boxes)."""
    same = (sampled_boxes[:, None, :] == all_boxes[None, :, :]).all(dim=2)
    assert same.any(dim=1).all()
    return same.float().argmax(dim=1)


@pytest.mark.parametrize("append_gt", [True, False])
def test_batched_roi_heads_targets_are_detectron2s(append_gt):
    opts = ["MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", append_gt]
    heads, batched = build_heads(opts), build_heads(opts + BATCHED_OPTS)
    assert type(heads) is StateROIHeads and isinstance(batched, BatchedStateROIHeads)
    targets = targets_batch()
    proposals = proposals_for(targets)
    with EventStorage() as storage:
        reference = heads.label_and_sample_proposals(proposals, targets)
        ref_stats = {k: v[0] for k, v in storage.latest().items()}
    with EventStorage() as storage:
        sampled = batched.label_and_sample_proposals(proposals, targets)
        stats = {k: v[0] for k, v in storage.latest().items()}
    assert stats == ref_stats
    full = add_ground_truth_to_proposals(targets, proposals) if append_gt else proposals
    num_classes = heads.num_classes
    for i, (t, p) in enumerate(zip(targets, full)):
        ref, got = reference[i], sampled[i]
        assert set(got.get_fields()) == set(ref.get_fields()), i
        fg = (got.gt_classes >= 0) & (got.gt_classes < num_classes)
        ref_fg = (ref.gt_classes >= 0) & (ref.gt_classes < num_classes)
        assert int(fg.sum()) == int(ref_fg.sum()) and len(got) == len(ref), i
        assert bool(fg[: int(fg.sum())].all()), "foreground first"
        # What detectron2 assigns to every proposal before sampling.
        matched_idxs, matched_labels = heads.proposal_matcher(
            pairwise_iou(t.gt_boxes, p.proposal_boxes))
        rows = _rows_of(got.proposal_boxes.tensor, p.proposal_boxes.tensor)
        assert torch.equal(got.objectness_logits, p.objectness_logits[rows])
        assert (matched_labels[rows] != -1).all()
        if len(t) == 0:
            assert (got.gt_classes == num_classes).all()
            continue
        expected_classes = torch.where(matched_labels[rows] == 0, num_classes,
                                       t.gt_classes[matched_idxs[rows]])
        assert torch.equal(got.gt_classes, expected_classes), i
        assert torch.equal(got.gt_boxes.tensor, t.gt_boxes.tensor[matched_idxs[rows]]), i
        assert torch.equal(got.gt_states, t.gt_states[matched_idxs[rows]]), i
    assert int(((sampled[0].gt_classes >= 0) & (sampled[0].gt_classes < num_classes)).sum()) > 0


def test_batched_roi_heads_sampling_distribution_is_detectron2s():
    """One image, 1,000 draws: foreground proposals per ground-truth box (their gt_classes are
    made distinct) match detectron2's ROI heads."""
    draws = 1000
    opts = ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32, "MODEL.ROI_HEADS.POSITIVE_FRACTION", 0.25]
    heads, batched = build_heads(opts), build_heads(opts + BATCHED_OPTS)
    target = targets_batch()[0]
    target.gt_classes = torch.arange(22)
    (proposals,) = proposals_for([target])
    full = add_ground_truth_to_proposals([target], [proposals])[0]
    owner, labels = heads.proposal_matcher(pairwise_iou(target.gt_boxes, full.proposal_boxes))
    assert int((labels == 1).sum()) > 8

    counts = []
    for model, seed, batches in ((batched, 0, [draws]), (heads, 1, [1] * draws)):
        torch.manual_seed(seed)
        classes = []
        with EventStorage():
            for size in batches:
                for p in model.label_and_sample_proposals([proposals] * size, [target] * size):
                    assert int((p.gt_classes < 22).sum()) == 8 and len(p) == 32
                    classes.append(p.gt_classes)
        counts.append(torch.bincount(torch.cat(classes), minlength=23)[:22])
    per_owner = torch.bincount(owner[labels == 1], minlength=22).double()
    assert_frequencies_agree(counts[0], counts[1], draws * 8 * per_owner / per_owner.sum())


# ------------------------------------------------------------------------------ whole model


def test_batched_model_has_the_same_weights_and_inference():
    plain, batched = (build_model(make_cfg(opts=o)) for o in ([], BATCHED_OPTS))
    assert isinstance(batched.proposal_generator, BatchedRPN)
    assert isinstance(batched.roi_heads, BatchedStateROIHeads)
    assert set(batched.state_dict()) == set(plain.state_dict())
    batched.load_state_dict(plain.state_dict())
    batch = random_batch(num_boxes=(0, 0), seed=5)
    plain.eval()
    batched.eval()
    with torch.no_grad():
        for a, b in zip(plain(batch), batched(batch)):
            assert len(a["instances"]) > 0
            assert torch.equal(a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor)
            assert torch.equal(a["instances"].state_scores, b["instances"].state_scores)


# The state branch's options (MODEL.ROI_STATE_HEAD): BatchedStateROIHeads only replaces the
# proposal sampling, the state losses are StateROIHeads'.
STATE_OPTIONS = {
    "box_features": [],
    "pooled_image_both": POOLED_OPTS + ["MODEL.ROI_STATE_HEAD.TRAIN_ON", "both"],
    "pooled_fpn_gt_boxes": ["MODEL.ROI_STATE_HEAD.NAME", "ConvStateHead",
                            "MODEL.ROI_STATE_HEAD.IN_FEATURES", ["p3", "p4"],
                            "MODEL.ROI_STATE_HEAD.TRAIN_ON", "gt_boxes"],
}


@pytest.mark.parametrize("state_options", list(STATE_OPTIONS))
@pytest.mark.parametrize("num_boxes", [(8, 0), (0, 0)])
def test_batched_model_training_step(num_boxes, state_options):
    """The per-image model's set of losses, finite (an unannotated image, a batch without
    annotations), with each kind of state branch; the state head gets its gradient."""
    torch.manual_seed(0)
    model = build_model(make_cfg(opts=BATCHED_OPTS + STATE_OPTIONS[state_options]))
    model.train()
    with EventStorage() as storage:
        losses = model(random_batch(num_boxes=num_boxes))
        sum(losses.values()).backward()
        stats = storage.latest()
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc",
                           "loss_state"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert {"rpn/num_pos_anchors", "roi_head/num_fg_samples"} <= set(stats)
    for name, p in model.roi_heads.state_head.named_parameters():
        assert p.grad is not None, name
    if sum(num_boxes) == 0:
        assert losses["loss_state"].item() == 0.0 and losses["loss_rpn_loc"].item() == 0.0
    else:
        assert losses["loss_state"].item() > 0


def _loss_curve(opts, sampling_seed, steps):
    """Total training loss per step: small model, AdamW, one fixed batch, same initial weights
    for every run; ``sampling_seed`` seeds what is random in the step (sampling, dropout)."""
    torch.manual_seed(0)
    cfg = make_cfg(opts=list(opts) + ["SOLVER.BASE_LR", 1e-3])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    model.train()
    batch = random_batch(num_boxes=(8, 5), seed=3)
    torch.manual_seed(sampling_seed)
    curve = []
    with EventStorage():
        for _ in range(steps):
            total = sum(model(batch).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            curve.append(total.item())
    return curve


def test_short_training_run_follows_the_per_image_loss_curve():
    """20 steps from the same weights, two sampling seeds per path: both paths learn, and the
    losses of their last 8 steps (16 per path) do not differ by more than noise (Welch's t
    below 3; sampling alone moves a step's loss by about 0.2 here)."""
    steps, window = 20, 8
    curves = {name: [_loss_curve(opts, seed, steps) for seed in (1, 2)]
              for name, opts in (("per_image", []), ("batched", BATCHED_OPTS))}
    first = curves["per_image"][0][0]
    for name, runs in curves.items():
        for curve in runs:
            assert curve[0] == pytest.approx(first, rel=0.05), name  # same weights
            assert statistics.mean(curve[-window:]) < 0.6 * first, name  # it learns
    late = {name: [x for c in runs for x in c[-window:]] for name, runs in curves.items()}
    a, b = late["per_image"], late["batched"]
    t = (statistics.mean(b) - statistics.mean(a)) / math.sqrt(
        statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    assert abs(t) < 3, (t, curves)
