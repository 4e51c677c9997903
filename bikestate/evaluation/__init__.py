"""State-aware evaluation: COCO AP per part, part-state metrics and part verification."""
from .evaluator import BikeStateEvaluator
from .metrics import (
    MATCH_IOU,
    NOT_FOUND_ID,
    VERIFY_SCORE_THRESH,
    bbox_state_ap50,
    coco_bbox_eval,
    confusion_matrix,
    greedy_match,
    match_and_verify,
    mean_ap,
    pairwise_iou,
    per_part_metrics,
    standard_ap,
    state_metrics,
    verification_metrics,
    verify_verdicts,
)

__all__ = [
    "BikeStateEvaluator",
    "MATCH_IOU",
    "NOT_FOUND_ID",
    "VERIFY_SCORE_THRESH",
    "bbox_state_ap50",
    "coco_bbox_eval",
    "confusion_matrix",
    "greedy_match",
    "match_and_verify",
    "mean_ap",
    "pairwise_iou",
    "per_part_metrics",
    "standard_ap",
    "state_metrics",
    "verification_metrics",
    "verify_verdicts",
]
