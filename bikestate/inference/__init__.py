"""Predictions for people: the predictor, the bike inspection report and the pictures.

- :class:`BikeStatePredictor`: model + weights + test-time resize; images in, ``Instances``
  with part states out (boxes in original pixels, on the CPU).
- :func:`build_report` / :func:`write_reports`: per image and part a verdict (intact,
  damaged, absent, occluded, not_found) and what needs attention.
- :func:`draw_predictions`: boxes coloured by state, labelled ``saddle · damaged 87%``.
- :func:`instances_to_records` / :func:`predictions_to_coco_results`: predictions.json and
  its conversion into COCO results for evaluation.
- :func:`find_images` / :func:`read_image`: the photos users really have.
- :func:`inspect_images`: all of that photo by photo, one bad photo costing only itself;
  :func:`inspect_image` for one photo already in memory.
- :func:`predictor_config`: a config file + overrides -> the predictor's config and the
  verdict rule's operating point.
"""
from .export import instances_to_records, predictions_to_coco_results
from .images import (
    IMAGE_EXTENSIONS,
    NotAnImageError,
    UnreadableImageError,
    find_images,
    read_image,
)
from .inspection import ImageResult, inspect_image, inspect_images
from .predictor import (
    BikeStatePredictor,
    load_model_weights,
    predictor_config,
    resolve_part_names,
)
from .report import build_report, write_reports
from .visualizer import draw_predictions, format_label

__all__ = [
    "BikeStatePredictor",
    "IMAGE_EXTENSIONS",
    "ImageResult",
    "NotAnImageError",
    "UnreadableImageError",
    "build_report",
    "draw_predictions",
    "find_images",
    "format_label",
    "inspect_image",
    "inspect_images",
    "instances_to_records",
    "load_model_weights",
    "predictions_to_coco_results",
    "predictor_config",
    "read_image",
    "resolve_part_names",
    "write_reports",
]
