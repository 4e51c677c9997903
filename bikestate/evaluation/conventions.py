"""Conventions every evaluation module shares: the input dicts and what the numbers mean.

The metrics work on per-image dicts of numpy arrays, so it can be unit-tested and
benchmarked without detectron2's catalogs or a model:

* **predictions** of one image: ``{"image_id": int, "boxes": (N, 4) float XYXY_ABS,
  "scores": (N,) float, "classes": (N,) int part index, "states": (N,) int state index,
  "state_scores": (N, S) float, rows sum to 1}``;
* **ground truth** of one image: ``{"image_id": int, "boxes": (M, 4) float XYXY_ABS,
  "classes": (M,) int, "states": (M,) int, "iscrowd": (M,) bool (optional)}``.
  Crowd annotations are ignored by the state and verification metrics (COCO AP ignores them its
  own way).

Conventions (documented once here, used everywhere):

* Box AP values (``bbox*/``) are in percent (0-100) like detectron2's ``COCOEvaluator``; the
  verification's ``damage_ap``, rates, accuracies, AUCs and F1 scores are fractions in [0, 1].
* A metric whose denominator is empty is ``float("nan")`` (a float, so detectron2's
  ``EvalHook`` and W&B accept it): e.g. the hallucination rate of a dataset without absent parts.
* AP with ground truth but no detection at all is 0.0 (nothing recalled); AP of a category or
  area range without ground truth is NaN (pycocotools' -1).
"""

__all__ = ["nan_div"]


def nan_div(num, den):
    """``num / den`` as a float, NaN when ``den`` is 0 (the conventions above)."""
    return float(num) / float(den) if den else float("nan")
