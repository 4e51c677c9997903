"""StateROIHeads: detectron2's StandardROIHeads plus a per-box part-state branch.

The box head's output features are computed once per ROI and feed both the box predictor
(part class + box) and the state head (intact / damaged / absent / occluded), with no second
pass over the ROIs:

* training: ``loss_state`` is the cross-entropy of the state head (or its focal /
  logit-adjusted variant) times ``MODEL.ROI_STATE_HEAD.LOSS_WEIGHT``, on the boxes chosen by
  ``TRAIN_ON``: the *foreground* sampled proposals with the ``gt_states`` they inherit from their
  matched ground truth (:meth:`ROIHeads.label_and_sample_proposals` copies every ``gt_*``
  field; at most ``PROPOSALS_PER_IMAGE`` of them per image when that is > 0), the ground-truth
  boxes themselves, or both. It is returned in every iteration, as a
  zero connected to the head's parameters when the batch has nothing to train on.
* inference: the box predictor's NMS returns, per image, the index of the ROI each kept
  detection came from; those rows of the already computed box features give the detections'
  states (``pred_states``, ``state_scores``), so no ROI is pooled twice.

With ``MODEL.ROI_STATE_HEAD.IN_FEATURES`` set (e.g. ``["image"]``: the normalized input pixels,
or FPN levels), the state head does not share the box head's features: each box (a detection's
final box at inference) is pooled for it alone, ``BOX_CONTEXT`` times larger around its centre,
to ``POOLER_RESOLUTION`` x ``POOLER_RESOLUTION`` (:class:`~.state_head.ConvStateHead`).

:class:`BatchedStateROIHeads` is the same model with the proposals of all images matched and
sampled at once (:mod:`bikestate.modeling.assignment`).
"""
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage

from ..utils.errors import ConfigError
from .assignment import batched_match, batched_pairwise_iou, batched_subsample_labels, pad_boxes
from .roi_align import set_pooler_cpu_backward
from .state_head import build_state_head, state_loss

__all__ = ["StateROIHeads", "BatchedStateROIHeads", "TRAIN_ON_CHOICES", "jitter_boxes",
           "given_box_features"]

# What loss_state is trained on (MODEL.ROI_STATE_HEAD.TRAIN_ON).
TRAIN_ON_CHOICES = ("proposals", "gt_boxes", "both")
# Name of the input pixels among the state head's IN_FEATURES (a stride-1 "feature map").
IMAGE_FEATURE = "image"

logger = logging.getLogger(__name__)


def given_box_features(model, images: ImageList) -> Dict[str, torch.Tensor]:
    """What :meth:`StateROIHeads.forward_with_given_boxes` pools for a preprocessed batch.

    Args:
        model: a ``GeneralizedRCNN`` with bikestate's ROI heads.
        images: the batch as ``model.preprocess_image`` returns it, (N, 3, H, W) normalized.

    Returns:
        The backbone's feature maps by name, each (N, C, Hi, Wi), and the input pixels under
        ``"image"`` (for a state head that pools them; ignored by the others).
    """
    return dict(model.backbone(images.tensor), **{IMAGE_FEATURE: images.tensor})


def jitter_boxes(boxes: Boxes, std: float, generator: Optional[torch.Generator] = None) -> Boxes:
    """Boxes with each side moved at random, as a detector's boxes miss the part's outline.

    A state head trained on exact annotated boxes can learn from how tightly a box fits its
    part (an absent part's box has no edges on its sides), a cue that detections at test time
    do not give; moved boxes take it away.

    Args:
        boxes: R boxes (XYXY).
        std: standard deviation of each side's shift, as a fraction of the box's width (x1,
            x2) or height (y1, y2).
        generator: random numbers (default: torch's global generator).
    Returns:
        Boxes: R boxes, sides in order and at least 1 pixel apart.
    """
    t = boxes.tensor
    size = (t[:, 2:] - t[:, :2]).repeat(1, 2)
    noise = torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
    moved = t + noise * std * size
    low = torch.minimum(moved[:, :2], moved[:, 2:])
    high = torch.maximum(torch.maximum(moved[:, :2], moved[:, 2:]), low + 1.0)
    return Boxes(torch.cat([low, high], dim=1))


def _num_rows(tensor: torch.Tensor):
    """The number of rows of ``tensor``, kept symbolic when traced: ``len()`` would write the
    number of detections of the tracing example into the graph as a constant."""
    return tensor.shape[0]


@ROI_HEADS_REGISTRY.register()
class StateROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` with a state head on the shared box-head features.

    Outputs, in addition to StandardROIHeads':

    * training: ``{"loss_state": scalar}`` among the losses;
    * inference: every predicted ``Instances`` gets ``pred_states`` (int64, N) and
      ``state_scores`` (float32, N x S, softmax, rows sum to 1).
    """

    @configurable
    def __init__(
        self,
        *,
        state_head: nn.Module,
        state_loss_weight: float = 0.5,
        state_class_weights: Tuple[float, ...] = (),
        state_in_features: Tuple[str, ...] = (),
        state_pooler: Optional[ROIPooler] = None,
        state_box_context: float = 1.0,
        state_train_on: str = "proposals",
        state_focal_gamma: float = 0.0,
        state_logit_adjustment: Tuple[float, ...] = (),
        state_train_box_jitter: float = 0.0,
        state_proposals_per_image: int = 0,
        **kwargs,
    ):
        """
        Args:
            state_head: maps per-box inputs (R, D) box-head features, or (R, C, P, P) boxes
                pooled by ``state_pooler``, and (R,) part classes when class conditioned, to
                (R, S) state logits; see :mod:`bikestate.modeling.state_head`.
            state_loss_weight: multiplier of ``loss_state`` in the total loss.
            state_class_weights: S per-state loss weights; empty means uniform.
            state_in_features: maps the state head's boxes are pooled from ("image" = the
                normalized input pixels); empty: the box head's features.
            state_pooler: the pooler of those maps (None when ``state_in_features`` is empty).
            state_box_context: boxes are enlarged by this factor around their centre before
                pooling.
            state_train_on: one of :data:`TRAIN_ON_CHOICES`.
            state_focal_gamma: > 0 trains with the focal loss of this gamma.
            state_logit_adjustment: S offsets added to the logits in training only (e.g.
                tau x log prior); empty for none.
            state_train_box_jitter: in training, each side of a box that ``loss_state`` pools
                moves by a normal shift of this standard deviation times the box's width
                (x) or height (y) (:func:`jitter_boxes`); 0 pools the boxes as they are.
            state_proposals_per_image: in training, ``loss_state`` takes at most this many of
                an image's foreground proposals, drawn at random (the state head's cost grows
                with them while the box head's does not); 0 takes all of them.
            kwargs: everything :class:`StandardROIHeads` takes.
        """
        super().__init__(**kwargs)
        if state_train_on not in TRAIN_ON_CHOICES:
            raise ConfigError(f"MODEL.ROI_STATE_HEAD.TRAIN_ON must be one of "
                              f"{', '.join(TRAIN_ON_CHOICES)}, got {state_train_on!r}")
        self.state_head = state_head
        self.state_loss_weight = float(state_loss_weight)
        self.state_class_weights = tuple(float(w) for w in state_class_weights)
        self.state_in_features = tuple(state_in_features)
        self.state_pooler = state_pooler
        self.state_box_context = float(state_box_context)
        self.state_train_on = state_train_on
        self.state_focal_gamma = float(state_focal_gamma)
        self.state_logit_adjustment = (torch.tensor(state_logit_adjustment, dtype=torch.float32)
                                       if len(state_logit_adjustment) else None)
        if not state_train_box_jitter >= 0:
            raise ConfigError("MODEL.ROI_STATE_HEAD.TRAIN_BOX_JITTER must be >= 0, got "
                              f"{state_train_box_jitter}")
        self.state_train_box_jitter = float(state_train_box_jitter)
        if state_proposals_per_image < 0:
            raise ConfigError("MODEL.ROI_STATE_HEAD.PROPOSALS_PER_IMAGE must be >= 0 (0 = all "
                              f"foreground proposals), got {state_proposals_per_image}")
        self.state_proposals_per_image = int(state_proposals_per_image)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(cls._init_state_head(cfg, input_shape, ret["box_head"].output_shape))
        for key in ("box_pooler", "state_pooler"):
            if ret.get(key) is not None:
                set_pooler_cpu_backward(ret[key], cfg.MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD)
        return ret

    @classmethod
    def _init_state_head(cls, cfg, input_shape: Dict[str, ShapeSpec],
                         box_head_output_shape: ShapeSpec):
        head_cfg = cfg.MODEL.ROI_STATE_HEAD
        in_features = tuple(head_cfg.IN_FEATURES)
        pooler = None
        if in_features:
            shapes = dict(input_shape)
            shapes[IMAGE_FEATURE] = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN), stride=1)
            unknown = [f for f in in_features if f not in shapes]
            if unknown:
                raise ConfigError(f"MODEL.ROI_STATE_HEAD.IN_FEATURES: {', '.join(unknown)} "
                                  f"unknown; choose from {', '.join(sorted(shapes))}")
            channels = {shapes[f].channels for f in in_features}
            if len(channels) != 1:
                raise ConfigError("MODEL.ROI_STATE_HEAD.IN_FEATURES must have the same number "
                                  f"of channels, got {sorted(channels)} ({list(in_features)})")
            resolution = head_cfg.POOLER_RESOLUTION
            pooler = ROIPooler(output_size=resolution,
                               scales=tuple(1.0 / shapes[f].stride for f in in_features),
                               sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
                               pooler_type="ROIAlignV2")
            head_input = ShapeSpec(channels=channels.pop(), height=resolution, width=resolution)
        else:
            # Same flattening rule as FastRCNNOutputLayers: the state head sees what the box
            # predictor sees (1024 for the 2-FC FPN box head, C*H*W for a conv-only head).
            shape = box_head_output_shape
            head_input = ShapeSpec(channels=shape.channels * (shape.width or 1)
                                   * (shape.height or 1))
        if head_cfg.BOX_CONTEXT < 1.0:
            raise ConfigError(f"MODEL.ROI_STATE_HEAD.BOX_CONTEXT must be >= 1, got "
                              f"{head_cfg.BOX_CONTEXT}")
        prior = tuple(head_cfg.STATE_PRIOR)
        if prior and (len(prior) != head_cfg.NUM_STATES or min(prior) <= 0):
            raise ConfigError(f"MODEL.ROI_STATE_HEAD.STATE_PRIOR must be {head_cfg.NUM_STATES} "
                              f"positive shares or empty, got {list(prior)}")
        needs_prior = head_cfg.AUTO_LOSS_WEIGHTS or head_cfg.LOGIT_ADJUST_TAU > 0
        if needs_prior and not prior:
            logger.warning("MODEL.ROI_STATE_HEAD.STATE_PRIOR is empty: the state loss uses a "
                           "uniform prior (training fills it from the training set)")
            prior = (1.0,) * head_cfg.NUM_STATES
        # Config numbers, on the CPU even when the model is built under another default device
        # (check_weights builds it on "meta", whose tensors hold no values).
        prior = torch.tensor(prior or (1.0,) * head_cfg.NUM_STATES, dtype=torch.float64,
                             device="cpu")
        prior = prior / prior.sum()
        weights = tuple(head_cfg.STATE_LOSS_WEIGHTS)
        if head_cfg.AUTO_LOSS_WEIGHTS:
            if weights:
                raise ConfigError("MODEL.ROI_STATE_HEAD: set STATE_LOSS_WEIGHTS or "
                                  "AUTO_LOSS_WEIGHTS, not both")
            # Class-balanced by the inverse square root of the shares, mean weight 1 over the
            # training boxes: damaged at 6 % weighs about 3x intact at 60 %.
            balanced = prior ** -0.5
            weights = tuple((balanced / (balanced * prior).sum()).tolist())
        if weights and len(weights) != head_cfg.NUM_STATES:
            raise ConfigError(
                f"MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS has {len(weights)} values, expected "
                f"{head_cfg.NUM_STATES} (one per state) or none"
            )
        if any(w < 0 for w in weights) or (weights and sum(weights) <= 0):
            raise ConfigError(
                f"MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS must be >= 0 with a positive sum, "
                f"got {list(weights)}"
            )
        adjustment = ()
        if head_cfg.LOGIT_ADJUST_TAU > 0:
            adjustment = tuple((head_cfg.LOGIT_ADJUST_TAU * prior.log()).tolist())
        return {
            "state_head": build_state_head(cfg, head_input),
            "state_loss_weight": head_cfg.LOSS_WEIGHT,
            "state_class_weights": weights,
            "state_in_features": in_features,
            "state_pooler": pooler,
            "state_box_context": head_cfg.BOX_CONTEXT,
            "state_train_on": head_cfg.TRAIN_ON,
            "state_focal_gamma": head_cfg.FOCAL_GAMMA,
            "state_logit_adjustment": adjustment,
            "state_train_box_jitter": head_cfg.TRAIN_BOX_JITTER,
            "state_proposals_per_image": head_cfg.PROPOSALS_PER_IMAGE,
        }

    # ------------------------------------------------------------------------------- forward
    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """See :meth:`StandardROIHeads.forward`; adds ``loss_state`` / ``pred_states``."""
        if IMAGE_FEATURE in self.state_in_features:
            features = dict(features, **{IMAGE_FEATURE: images.tensor})
        if self.training:
            assert targets, "'targets' argument is required during training"
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals, targets)
            losses.update(self._forward_mask(features, proposals))
            losses.update(self._forward_keypoint(features, proposals))
            return proposals, losses
        # _forward_box already attached the states; the parent's forward would call our
        # forward_with_given_boxes and pool every detection a second time.
        pred_instances = self._forward_box(features, proposals)
        pred_instances = super().forward_with_given_boxes(features, pred_instances)
        return pred_instances, {}

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances],
                     targets: Optional[List[Instances]] = None):
        """Box branch and state branch (on the same box-head features unless the state head
        pools its own).

        Args:
            features: FPN feature maps by name, each (N, C, Hi, Wi) (and "image" when the state
                head pools the input pixels).
            proposals: N Instances with ``proposal_boxes``; in training also ``gt_classes`` and,
                for images with annotations, ``gt_states`` (and ``gt_boxes``).
            targets: in training, the N ground-truth Instances (``gt_boxes``, ``gt_classes``,
                ``gt_states``), for ``TRAIN_ON`` gt_boxes / both.

        Returns:
            training: dict of losses (the box predictor's and ``loss_state``);
            inference: N Instances with ``pred_boxes``, ``scores``, ``pred_classes``,
            ``pred_states`` and ``state_scores``.
        """
        box_in = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(box_in, [x.proposal_boxes for x in proposals])
        box_features = self.box_head(box_features)  # (R, D) for all images together
        predictions = self.box_predictor(box_features)

        if self.training:
            losses = self.box_predictor.losses(predictions, proposals)
            losses.update(self._state_losses(features, box_features, proposals, targets))
            # proposals are modified in place below, so the losses come first (as in the parent).
            if self.train_on_pred_boxes:
                with torch.no_grad():
                    pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(
                        predictions, proposals
                    )
                    for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                        proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
            return losses

        pred_instances, kept_indices = self.box_predictor.inference(predictions, proposals)
        kept_indices = self._indices_into_proposals(predictions, proposals, kept_indices)
        offsets = [0]
        for p in proposals[:-1]:
            offsets.append(offsets[-1] + _num_rows(p.proposal_boxes.tensor))
        rows = [idx + off for idx, off in zip(kept_indices, offsets)]
        rows = cat(rows, dim=0) if rows else box_features.new_zeros((0,), dtype=torch.long)
        classes = cat([x.pred_classes for x in pred_instances], dim=0) if pred_instances else None
        if self.state_pooler is not None:
            state_in = self._pool_for_state(features, [x.pred_boxes for x in pred_instances])
        else:
            state_in = box_features[rows]
        self._set_states(pred_instances, self.state_head(state_in, classes))
        return pred_instances

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """States (and masks/keypoints if enabled) for given boxes.

        Used for test-time augmentation and for boxes from elsewhere (e.g. ground-truth boxes).
        Each given box is pooled and passed through the box head and the state head.

        Args:
            features: FPN feature maps by name, each (N, C, Hi, Wi), and, for a state head that
                pools the input pixels, "image": the normalized input batch (N, 3, H, W)
                (:func:`given_box_features` builds both).
            instances: N Instances with ``pred_boxes`` (Ri boxes) and ``pred_classes`` (Ri,).

        Returns:
            The same Instances with ``pred_states`` (Ri,) and ``state_scores`` (Ri, S) added.
        """
        assert not self.training
        assert instances[0].has("pred_boxes") and instances[0].has("pred_classes")
        instances = super().forward_with_given_boxes(features, instances)
        classes = cat([x.pred_classes for x in instances], dim=0)
        state_in = self.state_inputs(features, [x.pred_boxes for x in instances])
        self._set_states(instances, self.state_head(state_in, classes))
        return instances

    def state_inputs(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]
                     ) -> torch.Tensor:
        """What the state head takes for given boxes, all images together.

        Args:
            features: as for :meth:`forward_with_given_boxes` (with "image" for a state head
                that pools the input pixels).
            boxes: N Boxes, Ri boxes of image i in its input (resized) coordinates.

        Returns:
            (sum Ri, C, P, P) boxes pooled from the state head's maps, or, for a head on the box
            head's features, (sum Ri, D) those features of each box.
        """
        if self.state_pooler is not None:
            return self._pool_for_state(features, boxes)
        box_in = [features[f] for f in self.box_in_features]
        return self.box_head(self.box_pooler(box_in, boxes))

    # ------------------------------------------------------------------------------- helpers
    def _jitter(self, boxes: Boxes) -> Boxes:
        """The boxes ``loss_state`` pools: moved by :func:`jitter_boxes` when
        ``state_train_box_jitter`` is set (proposal rows of a head on the box head's shared
        features are pooled before this point and are not moved)."""
        if self.state_train_box_jitter == 0:
            return boxes
        return jitter_boxes(boxes, self.state_train_box_jitter)

    def _pool_for_state(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]):
        """Each box enlarged by ``state_box_context`` around its centre and pooled from the
        state head's maps: (sum Ri, C, P, P)."""
        if self.state_box_context != 1.0:
            enlarged = []
            for b in boxes:
                t = b.tensor
                centre, half = (t[:, :2] + t[:, 2:]) / 2, (t[:, 2:] - t[:, :2]) / 2
                half = half * self.state_box_context
                enlarged.append(Boxes(torch.cat([centre - half, centre + half], dim=1)))
            boxes = enlarged
        missing = [f for f in self.state_in_features if f not in features]
        if missing:
            raise KeyError(f"the state head pools {', '.join(missing)}, which the features lack: "
                           "pass the normalized input batch as features['image'] (what "
                           "StateROIHeads.forward does; GeneralizedRCNN.inference with given "
                           "boxes does not)")
        return self.state_pooler([features[f] for f in self.state_in_features], boxes)

    def _state_losses(self, features: Dict[str, torch.Tensor], box_features: torch.Tensor,
                      proposals: List[Instances], targets: Optional[List[Instances]]):
        """``loss_state`` on the boxes chosen by ``state_train_on``.

        Args:
            features: the maps by name (for a state head that pools its own boxes).
            box_features: (R, D) box-head features of all sampled proposals of the batch.
            proposals: N Instances with ``gt_classes`` (background = num_classes) and, on
                images that have annotations, ``gt_states``. detectron2 gives proposals of an
                image without annotations no ``gt_*`` field except an all-background
                ``gt_classes``; those rows are background and never used.
            targets: N ground-truth Instances with ``gt_boxes``, ``gt_classes``, ``gt_states``.
        """
        inputs, classes, states = [], [], []
        if self.state_train_on in ("proposals", "both"):
            gt_classes = cat([p.gt_classes for p in proposals], dim=0)
            gt_states = cat([self._proposal_states(p) for p in proposals], dim=0)
            fg = self._state_foreground(proposals, gt_classes)
            fg_inds = fg.nonzero().squeeze(1)
            if self.state_pooler is not None:
                fg_per_image = fg.split([len(p) for p in proposals])
                fg_boxes = [self._jitter(p.proposal_boxes[m])
                            for p, m in zip(proposals, fg_per_image)]
                inputs.append(self._pool_for_state(features, fg_boxes))
            else:
                # Only foreground rows go through the head: their count is all the loss uses.
                inputs.append(box_features[fg_inds])
            classes.append(gt_classes[fg_inds])
            states.append(gt_states[fg_inds])
        if self.state_train_on in ("gt_boxes", "both"):
            gt_boxes = [self._jitter(t.gt_boxes) for t in targets]
            if self.state_pooler is not None:
                inputs.append(self._pool_for_state(features, gt_boxes))
            else:
                box_in = [features[f] for f in self.box_in_features]
                inputs.append(self.box_head(self.box_pooler(box_in, gt_boxes)))
            classes.append(cat([t.gt_classes for t in targets], dim=0))
            states.append(cat([self._proposal_states(t) for t in targets], dim=0))
        inputs, classes, states = cat(inputs, dim=0), cat(classes, dim=0), cat(states, dim=0)
        # Rows per image the state head trains on: with its crop size, what a step costs it.
        get_event_storage().put_scalar("roi_head/num_state_rows", len(states) / len(proposals))
        logits = self.state_head(inputs, classes)
        loss = state_loss(logits, states, self.state_class_weights, self.state_focal_gamma,
                          self.state_logit_adjustment)
        if states.numel() == 0:
            # The zero loss must reach every head parameter (DDP waits for all gradients); with
            # no rows the head's first layers are not in the graph at all, so add them.
            loss = loss + sum(p.sum() for p in self.state_head.parameters()) * 0.0
        return {"loss_state": loss * self.state_loss_weight}

    def _state_foreground(self, proposals: List[Instances], gt_classes: torch.Tensor
                          ) -> torch.Tensor:
        """(R,) bool: the sampled proposals ``loss_state`` trains on, the foreground ones of
        each image, at most ``state_proposals_per_image`` of them drawn at random.

        Args:
            proposals: N Instances, the sampled proposals of each image.
            gt_classes: (R,) their classes concatenated (background = num_classes).
        """
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        cap = self.state_proposals_per_image
        if cap == 0:
            return fg
        kept = torch.zeros_like(fg)
        start = 0
        for p in proposals:
            rows = fg[start:start + len(p)].nonzero().squeeze(1) + start
            if len(rows) > cap:
                rows = rows[torch.randperm(len(rows), device=rows.device)[:cap]]
            kept[rows] = True
            start += len(p)
        return kept

    def _proposal_states(self, instances: Instances) -> torch.Tensor:
        """``gt_states`` of proposals or targets; zeros for an image without annotations (its
        rows are all background), an error for foreground without states."""
        if instances.has("gt_states"):
            return instances.gt_states
        if len(instances) > 0 and (instances.gt_classes != self.num_classes).any():
            raise ValueError(
                "training targets have foreground boxes but no 'gt_states' field: build the "
                "training data with bikestate's dataset mapper (it adds gt_states)"
            )
        return torch.zeros_like(instances.gt_classes)

    def _indices_into_proposals(self, predictions, proposals, kept_indices):
        """Map the box predictor's kept indices to rows of each image's proposals.

        ``fast_rcnn_inference_single_image`` drops rows with non-finite boxes or scores before
        NMS, and its returned indices then count the remaining rows only. Recompute the same
        mask in that (rare) case and translate the indices back.

        Under tracing (``tools/export_model.py``) the indices are returned as they are: that
        mask is a Python branch in detectron2 too, which a trace records as taken on its
        example's finite rows, so the traced NMS indices already count every row.
        """
        if torch.jit.is_tracing():
            return kept_indices
        scores_logits, deltas = predictions[0], predictions[1]
        finite = torch.isfinite(scores_logits).all(dim=1) & torch.isfinite(deltas).all(dim=1)
        if finite.all():
            boxes_ok = [
                torch.isfinite(p.proposal_boxes.tensor).all() for p in proposals
            ]
            if all(bool(b) for b in boxes_ok):
                return kept_indices
        boxes = self.box_predictor.predict_boxes(predictions, proposals)
        scores = self.box_predictor.predict_probs(predictions, proposals)
        mapped = []
        for b, s, idx in zip(boxes, scores, kept_indices):
            valid = torch.isfinite(b).all(dim=1) & torch.isfinite(s).all(dim=1)
            mapped.append(valid.nonzero().squeeze(1)[idx] if not valid.all() else idx)
        return mapped

    @staticmethod
    def _set_states(instances: List[Instances], state_logits: torch.Tensor):
        """Split (sum Ri, S) logits over the images; set ``state_scores`` and ``pred_states``."""
        probs = state_logits.float().softmax(dim=1)
        sizes = [_num_rows(x.pred_classes) for x in instances]
        for inst, p in zip(instances, probs.split(sizes, dim=0)):
            inst.state_scores = p
            inst.pred_states = p.argmax(dim=1).to(torch.int64)


@ROI_HEADS_REGISTRY.register()
class BatchedStateROIHeads(StateROIHeads):
    """:class:`StateROIHeads` whose proposals are matched and sampled for all images at once.

    ``MODEL.ROI_HEADS.NAME: "BatchedStateROIHeads"``. :meth:`label_and_sample_proposals` returns
    what :meth:`ROIHeads.label_and_sample_proposals` returns (ground truth appended to the
    proposals when ``proposal_append_gt``, detectron2's matches and labels, the same number of
    foreground and background samples per image drawn with the same distribution, every
    ``gt_*`` field of the targets, ``gt_states`` included, copied from the matched ground truth),
    with one host read per batch (the per-image sample counts, which size the outputs) instead
    of about four per image.
    """

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> List[Instances]:
        """See :meth:`ROIHeads.label_and_sample_proposals`; same outputs.

        Args:
            proposals: B Instances with ``proposal_boxes`` and ``objectness_logits``.
            targets: B Instances with ``gt_boxes``, ``gt_classes`` and other ``gt_*`` fields.

        Returns:
            B Instances of the sampled proposals (foreground first) with their fields,
            ``gt_classes`` (num_classes for background) and, on images with ground truth, the
            other ``gt_*`` fields of the matched ground truth.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        gt_classes, matches = self.match_proposals(proposals, targets)
        pos_idx, num_pos, neg_idx, num_neg = batched_subsample_labels(
            gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes)
        counts = torch.stack([num_pos, num_neg], dim=1).tolist()  # the one host read

        proposals_with_gt = []
        for i, (proposals_i, targets_i, (num_fg, num_bg)) in enumerate(
                zip(proposals, targets, counts)):
            sampled_idxs = torch.cat([pos_idx[i, :num_fg], neg_idx[i, :num_bg]])
            sampled = proposals_i[sampled_idxs]
            sampled.gt_classes = gt_classes[i, sampled_idxs]
            if len(targets_i) > 0:
                sampled_targets = matches[i, sampled_idxs]
                for name, value in targets_i.get_fields().items():
                    if name.startswith("gt_") and not sampled.has(name):
                        sampled.set(name, value[sampled_targets])
            # As detectron2: an image without ground truth gets no gt_* field but gt_classes.
            proposals_with_gt.append(sampled)

        storage = get_event_storage()
        storage.put_scalar("roi_head/num_fg_samples", np.mean([c[0] for c in counts]))
        storage.put_scalar("roi_head/num_bg_samples", np.mean([c[1] for c in counts]))
        return proposals_with_gt

    @torch.no_grad()
    def match_proposals(self, proposals: List[Instances], targets: List[Instances]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Training classes of every proposal, before sampling, as ``_sample_proposals`` sets
        them.

        Args:
            proposals: B Instances with ``proposal_boxes`` (P = the most of any image).
            targets: B Instances with ``gt_boxes`` and ``gt_classes``.

        Returns:
            gt_classes: (B, P) int64: the matched ground truth's class, ``num_classes`` for
                background, -1 for ignored proposals and for the padding after an image's
                proposals;
            matches: (B, P) int64 matched ground-truth row of each proposal (0 where none).
        """
        gt_boxes, gt_valid = pad_boxes([t.gt_boxes.tensor for t in targets], min_length=1)
        boxes, valid = pad_boxes([p.proposal_boxes.tensor for p in proposals])
        quality = batched_pairwise_iou(gt_boxes, boxes)
        matches, labels = batched_match(self.proposal_matcher, quality, gt_valid)
        del quality
        classes = torch.full(gt_valid.shape, self.num_classes, dtype=torch.int64,
                             device=gt_valid.device)
        for i, t in enumerate(targets):
            classes[i, : len(t)] = t.gt_classes
        gt_classes = classes.gather(1, matches)
        gt_classes.masked_fill_(labels == 0, self.num_classes)
        gt_classes.masked_fill_(labels == -1, -1)
        # detectron2 makes every proposal of an image without ground truth background,
        # whatever the matcher's first label.
        gt_classes.masked_fill_(~gt_valid.any(dim=1, keepdim=True), self.num_classes)
        gt_classes.masked_fill_(~valid, -1)
        return gt_classes, matches
