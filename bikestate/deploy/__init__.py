"""Deployable bikestate models: an exported graph plus ``model.json``, and their runtimes.

- ``tools/export_model.py`` (:mod:`bikestate.deploy.exporter`, needs torch and detectron2)
  writes an export folder: ``model.onnx`` or ``model.ts`` and ``model.json``
  (:mod:`bikestate.deploy.model_info`).
- :class:`OnnxBikeStatePredictor` runs an ONNX export with onnxruntime; importing this package
  and running it needs neither torch nor detectron2. :class:`TorchScriptBikeStatePredictor`
  runs a TorchScript export with torch alone.

Both take BGR uint8 images and return :class:`~bikestate.inference.detections.Detections` in the
original image's pixels, which :func:`bikestate.inference.report.build_report` and
:func:`bikestate.inference.export.instances_to_records` turn into the report and the records of
predictions.json, as they do for :class:`bikestate.inference.BikeStatePredictor`.
"""
from .model_info import FORMAT_VERSION, MODEL_JSON, ModelInfo
from .predictor import (
    ExportedBikeStatePredictor,
    OnnxBikeStatePredictor,
    TorchScriptBikeStatePredictor,
    load_predictor,
)

__all__ = [
    "FORMAT_VERSION",
    "MODEL_JSON",
    "ExportedBikeStatePredictor",
    "ModelInfo",
    "OnnxBikeStatePredictor",
    "TorchScriptBikeStatePredictor",
    "load_predictor",
]
