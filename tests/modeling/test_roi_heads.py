"""StateROIHeads on a real (small, randomly initialised) Faster R-CNN, CPU, tiny random images."""
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from bikestate.modeling import StateROIHeads
from bikestate.utils.errors import ConfigError

from modeling_cases import MLP_HEAD_OPTS, make_cfg, random_batch, random_instances

DETECTION_LOSSES = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}


def build(opts=(), seed=0):
    """StateROIHeads with the MLP state head on the box head's shared features (what these
    tests are about), then ``opts``."""
    torch.manual_seed(seed)
    return build_model(make_cfg(opts=MLP_HEAD_OPTS + list(opts)))


@pytest.fixture(scope="module")
def model():
    return build()


def train_step(model, batch, seed=0):
    """Forward + backward in training mode; returns the loss dict."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # proposal sampling and dropout
    with EventStorage():
        losses = model(batch)
        sum(losses.values()).backward()
    return losses


def state_head_grads(model):
    return {n: p.grad for n, p in model.roi_heads.state_head.named_parameters()}


def test_state_roi_heads_is_registered_and_shares_box_features(model):
    assert isinstance(model.roi_heads, StateROIHeads)
    # The state head reads what the box predictor reads: the box head's output (FC_DIM 512).
    assert model.roi_heads.box_head.output_shape.channels == 512
    assert model.roi_heads.state_head.fc_hidden.in_features == 512
    assert model.roi_heads.state_head.state_logits.out_features == 4


def test_training_returns_state_loss_with_an_unannotated_image(model):
    losses = train_step(model, random_batch(num_boxes=(8, 0)))
    assert DETECTION_LOSSES | {"loss_state"} == set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_state"].item() > 0
    for name, grad in state_head_grads(model).items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


def test_no_annotations_at_all_gives_zero_connected_state_loss(model):
    losses = train_step(model, random_batch(num_boxes=(0, 0)))
    assert "loss_state" in losses
    assert losses["loss_state"].item() == 0.0
    assert losses["loss_state"].requires_grad
    for name, grad in state_head_grads(model).items():
        assert grad is not None, f"{name} got no gradient: DDP would wait for it forever"
        assert torch.count_nonzero(grad) == 0


def test_all_proposals_background_gives_zero_connected_state_loss():
    # Without the GT boxes among the proposals, 2-pixel GT boxes match no proposal at IoU 0.5:
    # the images are annotated (proposals carry gt_states) but nothing is foreground.
    model = build(["MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", False])
    batch = random_batch(num_boxes=(3, 3))
    for item in batch:
        boxes = item["instances"].gt_boxes.tensor
        boxes[:, 2:] = boxes[:, :2] + 2.0
    model.train()
    torch.manual_seed(0)
    with EventStorage() as storage:
        losses = model(batch)
        sum(losses.values()).backward()
        assert storage.latest()["roi_head/num_fg_samples"][0] == 0
    assert losses["loss_state"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    for name, grad in state_head_grads(model).items():
        assert grad is not None, name


def test_targets_without_gt_states_get_a_clear_error(model):
    batch = random_batch(num_boxes=(4,))
    inst = batch[0]["instances"]
    plain = Instances(inst.image_size, gt_boxes=inst.gt_boxes, gt_classes=inst.gt_classes)
    batch[0]["instances"] = plain
    model.train()
    with EventStorage(), pytest.raises(ValueError, match="gt_states"):
        model(batch)


def test_loss_weight_scales_state_loss():
    batch = random_batch(num_boxes=(8, 5))
    low = train_step(build(["MODEL.ROI_STATE_HEAD.LOSS_WEIGHT", 0.5], seed=3), batch)
    high = train_step(build(["MODEL.ROI_STATE_HEAD.LOSS_WEIGHT", 2.0], seed=3), batch)
    assert low["loss_state"].item() > 0
    assert high["loss_state"].item() / low["loss_state"].item() == pytest.approx(4.0, rel=1e-4)
    # The weight touches nothing else.
    assert high["loss_cls"].item() == pytest.approx(low["loss_cls"].item(), rel=1e-5)


def test_inference_gives_state_of_every_kept_detection(model):
    model.eval()
    batch = random_batch(num_boxes=(0, 0), seed=5)
    with torch.no_grad():
        outputs = model(batch)
    assert len(outputs) == 2
    for out in outputs:
        inst = out["instances"]
        assert len(inst) > 0
        assert inst.pred_states.dtype == torch.int64
        assert inst.pred_states.shape == (len(inst),)
        assert inst.state_scores.shape == (len(inst), 4)
        assert inst.state_scores.dtype == torch.float32
        assert torch.allclose(inst.state_scores.sum(dim=1), torch.ones(len(inst)), atol=1e-5)
        assert torch.equal(inst.pred_states, inst.state_scores.argmax(dim=1))


def test_inference_states_come_from_the_rows_nms_kept(model):
    """Recompute every proposal's state from the same box features and pick NMS's rows."""
    model.eval()
    batch = random_batch(num_boxes=(0, 0), seed=6)
    roi_heads = model.roi_heads
    with torch.no_grad():
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        instances, _ = roi_heads(images, features, proposals)
        box_in = [features[f] for f in roi_heads.box_in_features]
        box_features = roi_heads.box_head(
            roi_heads.box_pooler(box_in, [p.proposal_boxes for p in proposals]))
        predictions = roi_heads.box_predictor(box_features)
        _, kept = roi_heads.box_predictor.inference(predictions, proposals)
        all_probs = roi_heads.state_head(box_features).softmax(dim=1)
    offset = 0
    for inst, idx, props in zip(instances, kept, proposals):
        assert len(inst) == len(idx) > 0
        torch.testing.assert_close(inst.state_scores, all_probs[offset + idx])
        offset += len(props)


def test_non_finite_rows_are_mapped_back_to_proposal_indices(model):
    """detectron2 drops non-finite rows before NMS and counts kept indices without them."""
    roi_heads = model.roi_heads
    proposals = [Instances((100, 100), proposal_boxes=Boxes(torch.tensor(
        [[0.0, 0, 10, 10], [20, 20, 60, 60], [50, 50, 90, 90]])))]
    scores = torch.zeros(3, 23)
    scores[:, 0] = 10.0  # confident part 0 everywhere
    scores[0, 0] = float("nan")
    deltas = torch.zeros(3, 22 * 4)
    _, kept = roi_heads.box_predictor.inference((scores, deltas), proposals)
    mapped = roi_heads._indices_into_proposals((scores, deltas), proposals, kept)
    assert sorted(mapped[0].tolist()) == sorted((kept[0] + 1).tolist())
    assert 0 not in mapped[0].tolist()


def test_forward_with_given_boxes_predicts_their_states(model):
    model.eval()
    batch = random_batch(num_boxes=(5, 0), seed=7)
    given = []
    for item in batch:
        gt = item["instances"]
        given.append(Instances(gt.image_size, pred_boxes=gt.gt_boxes.clone(),
                               pred_classes=gt.gt_classes.clone()))
    with torch.no_grad():
        outputs = model.inference(batch, detected_instances=given, do_postprocess=False)
    assert [len(x) for x in outputs] == [5, 0]
    assert outputs[0].state_scores.shape == (5, 4)
    assert outputs[1].state_scores.shape == (0, 4)
    assert torch.allclose(outputs[0].state_scores.sum(dim=1), torch.ones(5), atol=1e-5)
    assert outputs[0].pred_states.dtype == torch.int64


def test_class_conditioned_state_head_uses_the_class():
    model = build(["MODEL.ROI_STATE_HEAD.CLASS_CONDITIONED", True,
                   "MODEL.ROI_STATE_HEAD.CLASS_EMBED_DIM", 16])
    head = model.roi_heads.state_head
    assert head.class_conditioned and head.fc_hidden.in_features == 512 + 16
    losses = train_step(model, random_batch(num_boxes=(8, 0)))
    assert torch.isfinite(losses["loss_state"])
    assert head.class_embed.weight.grad.abs().sum() > 0
    # Training used the gt class; at inference the predicted class decides the embedding.
    model.eval()
    with torch.no_grad():
        head.class_embed.weight.normal_(std=1.0)  # make the classes clearly different
        batch = random_batch(num_boxes=(1,), seed=9)
        box = batch[0]["instances"].gt_boxes
        results = []
        for cls in (0, 5):
            given = [Instances((128, 160), pred_boxes=box.clone(),
                               pred_classes=torch.tensor([cls]))]
            results.append(model.inference(batch, given, do_postprocess=False)[0].state_scores)
        outputs = model(batch)
    assert not torch.allclose(results[0], results[1])
    assert outputs[0]["instances"].state_scores.shape[1] == 4


def test_state_loss_weights_config_is_used_and_checked():
    model = build(["MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS", [1.0, 5.0, 1.0, 1.0]])
    assert model.roi_heads.state_class_weights == (1.0, 5.0, 1.0, 1.0)
    assert torch.isfinite(train_step(model, random_batch(num_boxes=(8, 2)))["loss_state"])
    with pytest.raises(ConfigError, match="STATE_LOSS_WEIGHTS"):
        build(["MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS", [1.0, 2.0]])
    with pytest.raises(ConfigError, match="STATE_LOSS_WEIGHTS"):
        build(["MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS", [1.0, -1.0, 1.0, 1.0]])


def test_proposals_per_image_caps_the_state_rows_of_each_image():
    batch = random_batch(num_boxes=(8, 5))  # the ground truth among the proposals: >= 5 fg each
    rows = {}
    for cap in (0, 3):
        model = build(["MODEL.ROI_STATE_HEAD.PROPOSALS_PER_IMAGE", cap], seed=3)
        hook = model.roi_heads.state_head.register_forward_hook(
            lambda module, args, out, cap=cap: rows.__setitem__(cap, len(args[0])))
        with EventStorage() as storage:
            model.train()
            torch.manual_seed(0)
            losses = model(batch)
            fg_per_image = storage.latest()["roi_head/num_fg_samples"][0]
        hook.remove()
        assert torch.isfinite(losses["loss_state"]) and losses["loss_state"].item() > 0
    assert rows[0] == 2 * fg_per_image > 6  # every foreground proposal of both images
    assert rows[3] == 6
    # Which rows: foreground ones only, at most 3 per image, all of an image with fewer.
    heads = model.roi_heads
    background = heads.num_classes
    classes = [torch.tensor([0, 4, background, 7, 7, background, 2]),
               torch.tensor([background, 5, background, 1])]
    proposals = [Instances((10, 10), gt_classes=c) for c in classes]
    kept = heads._state_foreground(proposals, torch.cat(classes))
    first, second = kept.split([7, 4])
    assert int(first.sum()) == 3 and not first[[2, 5]].any()
    assert second.tolist() == [False, True, False, True]
    with pytest.raises(ConfigError, match="PROPOSALS_PER_IMAGE"):
        build(["MODEL.ROI_STATE_HEAD.PROPOSALS_PER_IMAGE", -1])


def test_random_instances_helper_keeps_boxes_inside():
    inst = random_instances(50, 70, 30, generator=torch.Generator().manual_seed(1))
    boxes = inst.gt_boxes.tensor
    assert (boxes[:, 2] <= 70 + 1e-4).all() and (boxes[:, 3] <= 50 + 1e-4).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
