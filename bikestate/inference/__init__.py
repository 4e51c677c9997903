"""Predictions for people: the predictor, the bike inspection report and the pictures.

- :class:`BikeStatePredictor`: model + weights + test-time resize; images in, ``Instances``
  with part states out (boxes in original pixels, on the CPU).
- :func:`build_report` / :func:`write_reports`: per image and part a verdict (intact,
  damaged, absent, occluded, not_found) and what needs attention.
- :func:`draw_verdicts`: a report's verdicts on its photo, one box per part found, coloured by
  verdict and labelled ``saddle · damaged 87%``; :func:`draw_predictions` draws every detection
  the same way and :func:`draw_ground_truth` draws annotations (``saddle · damaged``).
- :func:`instances_to_records` / :func:`predictions_to_coco_results`: predictions.json and
  its conversion into COCO results for evaluation.
- :class:`Detections`: one image's predictions as numpy arrays, what the report, the records
  and the pictures are computed from (also for the ONNX runtime of :mod:`bikestate.deploy`).
- :func:`find_images` / :func:`read_image`: the photos users really have.
- :func:`inspect_images`: all of that photo by photo, one bad photo costing only itself;
  :func:`inspect_image` for one photo already in memory.
- :func:`predictor_config`: a config file + overrides -> the predictor's config and the
  verdict rule's operating point.
"""
import importlib

# Public name -> the submodule defining it. Names are imported on first use: the submodules of
# records, report and images import neither torch nor detectron2, and
# :mod:`bikestate.deploy` uses them in processes that have neither.
_EXPORTS = {
    "BikeStatePredictor": ".predictor",
    "Detections": ".detections",
    "IMAGE_EXTENSIONS": ".images",
    "NotAnImageError": ".images",
    "ImageResult": ".inspection",
    "UnreadableImageError": ".images",
    "as_detections": ".detections",
    "build_report": ".report",
    "draw_ground_truth": ".visualizer",
    "draw_predictions": ".visualizer",
    "draw_verdicts": ".visualizer",
    "find_images": ".images",
    "format_label": ".visualizer",
    "inspect_image": ".inspection",
    "inspect_images": ".inspection",
    "instances_to_records": ".export",
    "predictions_to_coco_results": ".export",
    "predictor_config": ".predictor",
    "read_image": ".images",
    "resolve_part_names": ".predictor",
    "write_reports": ".report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
