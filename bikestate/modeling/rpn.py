"""BatchedRPN: detectron2's RPN with the training targets of all images assigned at once.

``MODEL.PROPOSAL_GENERATOR.NAME: "BatchedRPN"``. Same model, same proposals, same inference;
in training, :meth:`BatchedRPN.label_and_sample_anchors` gives what detectron2's per-image loop
gives (the same matches and labels, the same number of sampled positives and negatives per
image, each sample drawn with the same distribution, see :mod:`bikestate.modeling.assignment`)
without reading anything back to the host, and :meth:`BatchedRPN.losses` reduces the losses with
masks instead of boolean indexing (one host read for the logged anchor counts where detectron2
has two ``item()`` calls and four ``nonzero`` calls).
"""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import smooth_l1_loss

from detectron2.layers import cat
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from .assignment import (batched_match, batched_pairwise_iou, batched_subsample_labels,
                         pad_boxes, sampled_mask)

__all__ = ["BatchedRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class BatchedRPN(RPN):
    """:class:`RPN` whose anchor labelling, sampling and losses work on the whole batch."""

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """See :meth:`RPN.label_and_sample_anchors`; same outputs.

        Args:
            anchors: anchors of each feature map, A in all.
            gt_instances: B Instances with ``gt_boxes`` (an image may have none).

        Returns:
            B int8 label vectors (A,) in {-1, 0, 1} after sampling, and B (A, 4) matched
            ground-truth boxes (zeros for an image without ground truth).
        """
        gt_labels, matched_boxes = self.match_anchors(anchors, gt_instances)
        pos_idx, num_pos, neg_idx, num_neg = batched_subsample_labels(
            gt_labels, self.batch_size_per_image, self.positive_fraction, 0)
        length = gt_labels.shape[1]
        positive = sampled_mask(pos_idx, num_pos, length)
        negative = sampled_mask(neg_idx, num_neg, length)
        gt_labels = torch.where(positive, 1, torch.where(negative, 0, -1)).to(torch.int8)
        return list(gt_labels.unbind(0)), list(matched_boxes.unbind(0))

    @torch.no_grad()
    def match_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Matcher labels and matched ground-truth boxes of every anchor, before sampling.

        Returns:
            labels: (B, A) int8 in {-1, 0, 1}, -1 also for anchors outside the image when
                ``anchor_boundary_thresh`` >= 0;
            matched boxes: (B, A, 4).
        """
        anchors = Boxes.cat(anchors)
        gt_boxes, gt_valid = pad_boxes([x.gt_boxes.tensor for x in gt_instances], min_length=1)
        quality = batched_pairwise_iou(gt_boxes, anchors.tensor)
        matches, labels = batched_match(self.anchor_matcher, quality, gt_valid)
        del quality
        if self.anchor_boundary_thresh >= 0:
            inside = torch.stack([anchors.inside_box(x.image_size, self.anchor_boundary_thresh)
                                  for x in gt_instances])
            labels.masked_fill_(~inside, -1)
        matched_boxes = gt_boxes.gather(1, matches[:, :, None].expand(-1, -1, 4))
        return labels, matched_boxes

    @torch.jit.unused
    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        gt_labels: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        gt_boxes: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """:meth:`RPN.losses` (same values, same normalizer), reduced with masks.

        Args:
            anchors: anchors of each feature map, A in all.
            pred_objectness_logits: per level (B, Ai).
            gt_labels: B (A,) labels from :meth:`label_and_sample_anchors`.
            pred_anchor_deltas: per level (B, Ai, 4).
            gt_boxes: B (A, 4) matched boxes from :meth:`label_and_sample_anchors`.
        """
        if self.box_reg_loss_type != "smooth_l1":
            return super().losses(anchors, pred_objectness_logits, gt_labels,
                                  pred_anchor_deltas, gt_boxes)
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (B, A)
        pos_mask = gt_labels == 1
        valid_mask = gt_labels >= 0
        num_pos, num_neg = torch.stack([pos_mask.sum(), (gt_labels == 0).sum()]).tolist()
        storage = get_event_storage()
        storage.put_scalar("rpn/num_pos_anchors", num_pos / num_images)
        storage.put_scalar("rpn/num_neg_anchors", num_neg / num_images)

        anchors = type(anchors[0]).cat(anchors).tensor  # (A, 4)
        gt_boxes = torch.stack(gt_boxes)  # (B, A, 4)
        # One call for the whole batch (get_deltas checks the anchors with one host read).
        gt_deltas = self.box2box_transform.get_deltas(
            anchors.expand(num_images, -1, -1).reshape(-1, 4), gt_boxes.reshape(-1, 4)
        ).view(gt_boxes.shape)
        # Targets of anchors that are not positive can be infinite (matched box of zero size in
        # an image without ground truth): replaced before the loss so no NaN reaches a gradient.
        gt_deltas = torch.where(pos_mask[:, :, None], gt_deltas, 0.0)
        pred_deltas = cat(pred_anchor_deltas, dim=1)
        localization_loss = torch.where(
            pos_mask[:, :, None],
            smooth_l1_loss(pred_deltas, gt_deltas, beta=self.smooth_l1_beta, reduction="none"),
            0.0,
        ).sum()
        objectness_loss = torch.where(
            valid_mask,
            F.binary_cross_entropy_with_logits(
                cat(pred_objectness_logits, dim=1), gt_labels.clamp(min=0).to(torch.float32),
                reduction="none"),
            0.0,
        ).sum()
        normalizer = self.batch_size_per_image * num_images
        losses = {
            "loss_rpn_cls": objectness_loss / normalizer,
            "loss_rpn_loc": localization_loss / normalizer,
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}
