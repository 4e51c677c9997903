"""Matching detections to ground-truth parts: IoU and greedy one-to-one matching per part.

Inputs are the per-image dicts of :mod:`.conventions` (XYXY_ABS boxes).
"""
import numpy as np

__all__ = ["MATCH_IOU", "pairwise_iou", "same_class_iou", "greedy_match", "match_pairs"]

# IoU at which a detection matches a ground-truth part of the same class.
MATCH_IOU = 0.5


def pairwise_iou(boxes1, boxes2):
    """IoU of every pair of XYXY boxes, the COCO way (no +1 on widths).

    Args:
        boxes1 (ndarray): (N, 4) XYXY_ABS.
        boxes2 (ndarray): (M, 4) XYXY_ABS.
    Returns:
        ndarray: (N, M) float64 IoU; 0 where the union is empty.
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    wh1 = np.clip(boxes1[:, 2:] - boxes1[:, :2], 0, None)
    wh2 = np.clip(boxes2[:, 2:] - boxes2[:, :2], 0, None)
    area1, area2 = wh1[:, 0] * wh1[:, 1], wh2[:, 0] * wh2[:, 1]
    lt = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def same_class_iou(pred_boxes, pred_classes, gt_boxes, gt_classes):
    """(N, M) IoU with -1 wherever the predicted part differs from the ground-truth part."""
    iou = pairwise_iou(pred_boxes, gt_boxes)
    iou[np.asarray(pred_classes)[:, None] != np.asarray(gt_classes)[None, :]] = -1.0
    return iou


def greedy_match(pred_scores, iou, iou_thresh=MATCH_IOU):
    """One-to-one greedy matching by score, as COCO does it for one IoU threshold.

    Detections are visited from the highest score down; each takes the still unmatched ground
    truth with the highest IoU if that IoU is >= ``iou_thresh`` (on equal IoUs the later ground
    truth, as pycocotools). Duplicates stay unmatched.

    Args:
        pred_scores (ndarray): (N,) detection scores.
        iou (ndarray): (N, M) IoU, negative where a pair may not match (other part).
        iou_thresh (float): minimum IoU of a match.
    Returns:
        ndarray: (N,) int64 index of the matched ground truth, -1 when unmatched.
    """
    num_pred, num_gt = iou.shape
    match = np.full(num_pred, -1, dtype=np.int64)
    if num_pred == 0 or num_gt == 0:
        return match
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    candidates = iou[order] >= iou_thresh
    rows = np.flatnonzero(candidates.any(axis=1))  # only detections that can match cost a loop
    taken = np.zeros(num_gt, dtype=bool)
    for row in rows:
        det = order[row]
        ious = np.where(taken, -1.0, iou[det])
        best = num_gt - 1 - int(ious[::-1].argmax())  # ties: the last, as pycocotools
        if ious[best] >= iou_thresh:
            match[det] = best
            taken[best] = True
    return match


def match_pairs(predictions, ground_truths, iou_thresh=MATCH_IOU):
    """Match detections one-to-one to ground truth (greedy by score, same part), per image.

    Args:
        predictions (dict[int, dict]): per image id, the predictions (module docstring). An
            image without an entry has no detection.
        ground_truths (dict[int, dict]): per image id, the ground truth; images without
            annotations may be missing or have empty arrays.
        iou_thresh (float): IoU of a match.
    Returns:
        dict of 1-d int64 arrays, one entry per matched (ground truth, detection) pair,
        concatenated over images: ``pair_part``, ``pair_gt_state``, ``pair_pred_state``.
    """
    pair_part, pair_gt, pair_pred = [], [], []
    for image_id, gt in ground_truths.items():
        gt_classes = np.asarray(gt["classes"], dtype=np.int64).reshape(-1)
        pred = predictions.get(image_id)
        if gt_classes.size == 0 or pred is None or len(pred["scores"]) == 0:
            continue
        keep = ~np.asarray(gt.get("iscrowd", np.zeros(gt_classes.size, bool)), dtype=bool)
        gt_classes = gt_classes[keep]
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)[keep]
        gt_states = np.asarray(gt["states"], dtype=np.int64).reshape(-1)[keep]
        iou = same_class_iou(pred["boxes"], pred["classes"], gt_boxes, gt_classes)
        match = greedy_match(np.asarray(pred["scores"], dtype=np.float64), iou, iou_thresh)
        matched = match >= 0
        pair_part.append(gt_classes[match[matched]])
        pair_gt.append(gt_states[match[matched]])
        pair_pred.append(np.asarray(pred["states"], dtype=np.int64)[matched])

    def cat(arrays):
        return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)

    return {"pair_part": cat(pair_part), "pair_gt_state": cat(pair_gt),
            "pair_pred_state": cat(pair_pred)}
