"""State-aware evaluation: COCO AP per part, part-state metrics and part verification."""
from .calibration import choose_operating_point
from .evaluator import BikeStateEvaluator, verification_table
from .coco_ap import bbox_state_ap50, coco_ap_at_iou, coco_bbox_eval, mean_ap, standard_ap
from .matching import MATCH_IOU, greedy_match, match_pairs, pairwise_iou
from .states import confusion_matrix, state_metrics
from .verification import verdict_pairs, verification_metrics

__all__ = [
    "BikeStateEvaluator",
    "MATCH_IOU",
    "bbox_state_ap50",
    "choose_operating_point",
    "coco_ap_at_iou",
    "coco_bbox_eval",
    "confusion_matrix",
    "greedy_match",
    "match_pairs",
    "mean_ap",
    "pairwise_iou",
    "standard_ap",
    "state_metrics",
    "verdict_pairs",
    "verification_metrics",
    "verification_table",
]
