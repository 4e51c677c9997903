"""StateROIHeads: detectron2's StandardROIHeads plus a per-box part-state branch.

The box head's output features are computed once per ROI and feed both the box predictor
(part class + box) and the state head (intact / damaged / absent / occluded), as in the seed's
multi-task Faster R-CNN, but without its second pass over the ROIs:

* training: ``loss_state`` is the cross-entropy of the state head on the *foreground* sampled
  proposals against the ``gt_states`` they inherit from their matched ground truth
  (:meth:`ROIHeads.label_and_sample_proposals` copies every ``gt_*`` field), times
  ``MODEL.ROI_STATE_HEAD.LOSS_WEIGHT``. It is returned in every iteration, as a zero connected
  to the head's parameters when the batch has no foreground.
* inference: the box predictor's NMS returns, per image, the index of the ROI each kept
  detection came from; those rows of the already computed box features give the detections'
  states (``pred_states``, ``state_scores``), so no ROI is pooled twice.
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances

from ..utils.errors import ConfigError
from .state_head import build_state_head, state_loss

__all__ = ["StateROIHeads"]

logger = logging.getLogger(__name__)


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
        **kwargs,
    ):
        """
        Args:
            state_head: maps (R, D) box-head features (and (R,) part classes when class
                conditioned) to (R, S) state logits; see :mod:`bikestate.modeling.state_head`.
            state_loss_weight: multiplier of ``loss_state`` in the total loss.
            state_class_weights: S per-state cross-entropy weights; empty means uniform.
            kwargs: everything :class:`StandardROIHeads` takes.
        """
        super().__init__(**kwargs)
        self.state_head = state_head
        self.state_loss_weight = float(state_loss_weight)
        self.state_class_weights = tuple(float(w) for w in state_class_weights)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(cls._init_state_head(cfg, ret["box_head"].output_shape))
        return ret

    @classmethod
    def _init_state_head(cls, cfg, box_head_output_shape: ShapeSpec):
        head_cfg = cfg.MODEL.ROI_STATE_HEAD
        # Same flattening rule as FastRCNNOutputLayers: the state head sees what the box
        # predictor sees (1024 for the 2-FC FPN box head, C*H*W for a conv-only head).
        shape = box_head_output_shape
        input_dim = shape.channels * (shape.width or 1) * (shape.height or 1)
        weights = tuple(head_cfg.STATE_LOSS_WEIGHTS)
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
        return {
            "state_head": build_state_head(cfg, input_dim),
            "state_loss_weight": head_cfg.LOSS_WEIGHT,
            "state_class_weights": weights,
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
        if self.training:
            return super().forward(images, features, proposals, targets)
        # _forward_box already attached the states; the parent's forward would call our
        # forward_with_given_boxes and pool every detection a second time.
        pred_instances = self._forward_box(features, proposals)
        pred_instances = super().forward_with_given_boxes(features, pred_instances)
        return pred_instances, {}

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Box branch and state branch on the same box-head features.

        Args:
            features: FPN feature maps by name, each (N, C, Hi, Wi).
            proposals: N Instances with ``proposal_boxes``; in training also ``gt_classes`` and,
                for images with annotations, ``gt_states`` (and ``gt_boxes``).

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
            losses.update(self._state_losses(box_features, proposals))
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
            offsets.append(offsets[-1] + len(p))
        rows = [idx + off for idx, off in zip(kept_indices, offsets)]
        rows = cat(rows, dim=0) if rows else box_features.new_zeros((0,), dtype=torch.long)
        classes = cat([x.pred_classes for x in pred_instances], dim=0) if pred_instances else None
        state_logits = self.state_head(box_features[rows], classes)
        self._set_states(pred_instances, state_logits)
        return pred_instances

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """States (and masks/keypoints if enabled) for given boxes.

        Used for test-time augmentation and for boxes from elsewhere (e.g. ground-truth boxes).
        Each given box is pooled and passed through the box head and the state head.

        Args:
            features: FPN feature maps by name, each (N, C, Hi, Wi).
            instances: N Instances with ``pred_boxes`` (Ri boxes) and ``pred_classes`` (Ri,).

        Returns:
            The same Instances with ``pred_states`` (Ri,) and ``state_scores`` (Ri, S) added.
        """
        assert not self.training
        assert instances[0].has("pred_boxes") and instances[0].has("pred_classes")
        instances = super().forward_with_given_boxes(features, instances)
        box_in = [features[f] for f in self.box_in_features]
        box_features = self.box_head(self.box_pooler(box_in, [x.pred_boxes for x in instances]))
        classes = cat([x.pred_classes for x in instances], dim=0)
        self._set_states(instances, self.state_head(box_features, classes))
        return instances

    # ------------------------------------------------------------------------------- helpers
    def _state_losses(self, box_features: torch.Tensor, proposals: List[Instances]):
        """``loss_state`` on the foreground proposals.

        Args:
            box_features: (R, D) features of all sampled proposals of the batch.
            proposals: N Instances with ``gt_classes`` (background = num_classes) and, on
                images that have annotations, ``gt_states``. detectron2 gives proposals of an
                image without annotations no ``gt_*`` field except an all-background
                ``gt_classes``; those rows are background and never used.
        """
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        gt_states = []
        for p in proposals:
            if p.has("gt_states"):
                gt_states.append(p.gt_states)
            elif (p.gt_classes != self.num_classes).any() and len(p) > 0:
                raise ValueError(
                    "training targets have foreground boxes but no 'gt_states' field: build the "
                    "training data with bikestate's dataset mapper (it adds gt_states)"
                )
            else:
                gt_states.append(torch.zeros_like(p.gt_classes))
        gt_states = cat(gt_states, dim=0)
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        fg_inds = fg.nonzero().squeeze(1)
        # Only foreground rows go through the head: cheaper, and their count is all the loss uses.
        logits = self.state_head(box_features[fg_inds], gt_classes[fg_inds])
        loss = state_loss(logits, gt_states[fg_inds], self.state_class_weights)
        if fg_inds.numel() == 0:
            # The zero loss must reach every head parameter (DDP waits for all gradients); with
            # no rows the head's first layers are not in the graph at all, so add them.
            loss = loss + sum(p.sum() for p in self.state_head.parameters()) * 0.0
        return {"loss_state": loss * self.state_loss_weight}

    def _indices_into_proposals(self, predictions, proposals, kept_indices):
        """Map the box predictor's kept indices to rows of each image's proposals.

        ``fast_rcnn_inference_single_image`` drops rows with non-finite boxes or scores before
        NMS, and its returned indices then count the remaining rows only. Recompute the same
        mask in that (rare) case and translate the indices back.
        """
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
        for inst, p in zip(instances, probs.split([len(x) for x in instances], dim=0)):
            inst.state_scores = p
            inst.pred_states = p.argmax(dim=1).to(torch.int64)
