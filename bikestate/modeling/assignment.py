"""Training-target assignment for a whole batch at once: IoU, matching and fg/bg sampling.

detectron2 assigns training targets one image at a time (``RPN.label_and_sample_anchors``,
``ROIHeads.label_and_sample_proposals``): per image a pairwise IoU, a :class:`Matcher` call and
:func:`subsample_labels`, whose ``nonzero`` calls (and the matcher's ``assert``) each wait for
the GPU. These functions do the same for all images in one set of batched tensor operations,
on ground truth (and proposals) padded to the largest image of the batch, without reading any
value back to the host:

* :func:`pad_boxes`: a list of (Ri, 4) box tensors as one (B, R, 4) tensor and a (B, R) mask;
* :func:`batched_pairwise_iou`: detectron2's :func:`pairwise_iou`, bit for bit, per image;
* :func:`batched_match`: a detectron2 :class:`Matcher`'s matches and labels (thresholds,
  labels, ``allow_low_quality_matches`` with its ties), padded ground-truth rows never match;
* :func:`batched_subsample_labels`: :func:`subsample_labels`' sample sizes per image
  (``min(#fg, int(num_samples * positive_fraction))`` positives, the rest negatives), each a
  uniformly random subset like ``randperm``'s, chosen as the top-k of random keys.

Shapes: B images, M ground-truth rows (padded), N anchors or proposals (padded for proposals).
"""
from typing import List, Optional, Tuple

import torch

from detectron2.modeling.matcher import Matcher

__all__ = ["pad_boxes", "batched_pairwise_iou", "batched_match", "batched_subsample_labels",
           "sampled_mask"]


def pad_boxes(boxes: List[torch.Tensor], min_length: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack per-image boxes into one zero-padded tensor.

    Args:
        boxes: B tensors (Ri, 4), on one device.
        min_length: smallest R of the result (1 lets a batch without any box still be reduced
            over its rows).

    Returns:
        (B, R, 4) boxes with R = max(max Ri, min_length), zeros after row Ri of image i, and the
        (B, R) bool mask of real rows.
    """
    length = max([len(b) for b in boxes] + [min_length])
    padded = boxes[0].new_zeros((len(boxes), length, 4))
    valid = torch.zeros((len(boxes), length), dtype=torch.bool, device=boxes[0].device)
    for i, b in enumerate(boxes):
        padded[i, : len(b)] = b
        valid[i, : len(b)] = True
    return padded, valid


def batched_pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of boxes of each image, as :func:`detectron2.structures.pairwise_iou`
    computes it (same operations on the same numbers, so the same results bit for bit; 0 where
    boxes do not intersect).

    Args:
        boxes1: (B, M, 4) xyxy.
        boxes2: (B, N, 4) xyxy, or (N, 4) shared by every image (anchors).

    Returns:
        (B, M, N) IoU.
    """
    # One contiguous plane per coordinate, (B, M, 1) against (B or 1, 1, N): the broadcast
    # operations then run over contiguous rows of N. Width and height are kept apart, (B, M, N)
    # each, where detectron2 has an (M, N, 2) tensor per image; the product of the two clamped
    # sides is the same number as its prod(dim=2).
    x1a, y1a, x2a, y2a = (c.contiguous()[:, :, None] for c in boxes1.unbind(-1))
    x1b, y1b, x2b, y2b = (c.contiguous()[..., None, :] for c in boxes2.unbind(-1))
    width = torch.min(x2a, x2b).sub_(torch.max(x1a, x1b)).clamp_(min=0)
    height = torch.min(y2a, y2b).sub_(torch.max(y1a, y1b)).clamp_(min=0)
    inter = width.mul_(height)
    overlap = inter > 0
    union = ((x2a - x1a) * (y2a - y1a) + (x2b - x1b) * (y2b - y1b)).sub_(inter)
    return inter.div_(union).masked_fill_(~overlap, 0.0)


def batched_match(matcher: Matcher, quality: torch.Tensor, gt_valid: torch.Tensor
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``matcher(quality[i][gt_valid[i]])`` for every image i, in one go.

    Args:
        matcher: a detectron2 :class:`Matcher` (its thresholds, labels and
            ``allow_low_quality_matches`` are used).
        quality: (B, M, N) match quality (IoU, >= 0) of M padded ground-truth rows against N
            predictions; its padded rows are overwritten (with -1).
        gt_valid: (B, M) bool, False on padded rows: they never match, and an image without a
            valid row gets the matcher's first label everywhere with match index 0, as
            detectron2 gives an image without ground truth.

    Returns:
        matches: (B, N) int64 index of the matched ground-truth row (the first of equal
            maxima, like ``Tensor.max``);
        labels: (B, N) int8 matcher labels (-1 ignore, 0 negative, 1 positive).
    """
    # -1 is below every IoU, so a padded row is never the maximum of a column that has a real
    # row, and falls in the lowest threshold interval when it is alone.
    quality.masked_fill_(~gt_valid[:, :, None], -1.0)
    matched_vals, matches = quality.max(dim=1)
    labels = torch.ones_like(matches, dtype=torch.int8)
    for label, low, high in zip(matcher.labels, matcher.thresholds[:-1], matcher.thresholds[1:]):
        labels.masked_fill_((matched_vals >= low) & (matched_vals < high), label)
    if matcher.allow_low_quality_matches and quality.shape[2] > 0:
        # Matcher.set_low_quality_matches_: every prediction whose quality equals the highest
        # quality of some real ground-truth row (ties included, even a highest quality of 0).
        highest = quality.max(dim=2, keepdim=True).values  # (B, M, 1)
        is_best = (quality == highest) & gt_valid[:, :, None]
        labels.masked_fill_(is_best.any(dim=1), 1)
    return matches, labels


def batched_subsample_labels(
    labels: torch.Tensor,
    num_samples: int,
    positive_fraction: float,
    bg_label: int,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`detectron2.modeling.sampling.subsample_labels` for every row of ``labels``.

    Per image, ``num_pos = min(#positives, int(num_samples * positive_fraction))`` positives
    and ``num_neg = min(#negatives, num_samples - num_pos)`` negatives are drawn, each set
    uniformly at random among all subsets of that size (as ``randperm(...)[:k]``): every
    element gets an independent uniform float64 key (53 random bits, so ties that would favour
    one index are negligible) and the k largest keys of the positives (negatives) win.

    Args:
        labels: (B, N) labels: -1 ignore, ``bg_label`` negative, anything else positive.
        num_samples, positive_fraction, bg_label: as in ``subsample_labels``.
        generator: random generator of the keys (on ``labels``' device); None: the default one.

    Returns:
        pos_idx: (B, Kp) int64 candidate positive indices in random order, Kp = min(N,
            int(num_samples * positive_fraction)); the first ``num_pos[i]`` of row i are the
            sampled positives of image i (the rest are not positives, or not sampled);
        num_pos: (B,) int64;
        neg_idx: (B, Kn) int64, Kn = min(N, num_samples), likewise for the negatives;
        num_neg: (B,) int64.
    """
    positive = (labels != -1) & (labels != bg_label)
    negative = labels == bg_label
    pos_cap = int(num_samples * positive_fraction)
    num_pos = positive.sum(dim=1).clamp(max=pos_cap)
    num_neg = torch.minimum(negative.sum(dim=1), num_samples - num_pos)
    keys = torch.rand(labels.shape, generator=generator, dtype=torch.float64,
                      device=labels.device)
    length = labels.shape[1]
    # Keys are in [0, 1): -1 puts every other element behind the candidates.
    pos_idx = keys.masked_fill(~positive, -1.0).topk(min(pos_cap, length), dim=1).indices
    neg_idx = keys.masked_fill_(~negative, -1.0).topk(min(num_samples, length), dim=1).indices
    return pos_idx, num_pos, neg_idx, num_neg


def sampled_mask(idx: torch.Tensor, count: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) bool mask of the first ``count[i]`` indices of each row of ``idx`` (B, K)."""
    rank = torch.arange(idx.shape[1], device=idx.device)
    mask = torch.zeros((idx.shape[0], length), dtype=torch.bool, device=idx.device)
    return mask.scatter_(1, idx, rank[None, :] < count[:, None])
