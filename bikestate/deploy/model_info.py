"""``model.json``: what a runtime needs besides the graph to give bikestate's answers.

An export folder holds the graph (``model.onnx`` or ``model.ts``) and ``model.json``::

    {"format_version": 1, "format": "onnx", "graph": "model.onnx", "onnx_opset": 17,
     "part_names": [...22 names...], "state_names": ["intact", "damaged", "absent", "occluded"],
     "input": {"format": "BGR", "pixel_mean": [...], "pixel_std": [...],
               "min_size_test": 320, "max_size_test": 480},
     "outputs": ["boxes", "scores", "classes", "states", "state_scores"],
     "detection_score_thresh": 0.05,
     "operating_point": {...the thresholds.json of the weights, or the default rule...},
     "exported_from": {"config_file": ..., "weights": ..., "bikestate": ..., "torch": ...}}

The graph takes one image, float32 (3, H, W) with values 0-255 in the channel order
``input.format``, already resized by the test resize (``min_size_test`` / ``max_size_test``);
the pixel mean and std are applied inside the graph (they are recorded for readers). Its
outputs are the detections scoring above ``detection_score_thresh`` in the pixels of that
resized image: ``boxes`` (N, 4) XYXY, ``scores`` (N,), ``classes`` (N,) int64, ``states``
(N,) int64 and ``state_scores`` (N, S). Mapping boxes back to the original image is left to
the runtime (:mod:`bikestate.deploy.preprocess`). This module imports neither torch nor
detectron2.
"""
import json
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from ..utils.errors import ConfigError, ExportError
from ..verdict import OperatingPoint

__all__ = ["FORMAT_VERSION", "MODEL_JSON", "GRAPH_FILES", "OUTPUT_NAMES", "ModelInfo"]

# Version of the layout above; a folder of another version is refused.
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
# Graph file name of each export format.
GRAPH_FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}
# The graph's outputs, in order.
OUTPUT_NAMES = ("boxes", "scores", "classes", "states", "state_scores")


@dataclass(frozen=True)
class ModelInfo:
    """The contents of ``model.json`` (module docstring).

    Attributes:
        export_dir (str): the folder.
        format (str): ``onnx`` or ``torchscript``.
        graph_path (str): the graph file.
        part_names, state_names (tuple[str]): class and state names by index.
        input_format (str): ``BGR`` or ``RGB``, the graph's channel order.
        pixel_mean, pixel_std (tuple[float]): applied inside the graph.
        min_size_test, max_size_test (int): the test resize (0: no resize).
        detection_score_thresh (float): the graph keeps detections scoring above it.
        operating_point (OperatingPoint): the verdict rule of the exported weights.
        data (dict): the whole file.
    """

    export_dir: str
    format: str
    graph_path: str
    part_names: Tuple[str, ...]
    state_names: Tuple[str, ...]
    input_format: str
    pixel_mean: Tuple[float, ...]
    pixel_std: Tuple[float, ...]
    min_size_test: int
    max_size_test: int
    detection_score_thresh: float
    operating_point: OperatingPoint
    data: Optional[dict] = None

    @classmethod
    def load(cls, export_dir):
        """Read and check ``export_dir/model.json``; one-line :class:`ExportError` otherwise."""
        path = os.path.join(export_dir, MODEL_JSON)
        if not os.path.isdir(export_dir):
            raise ExportError(f"{export_dir}: no such export folder (tools/export_model.py "
                              f"writes one)")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ExportError(f"{path}: missing; {export_dir} is not an export folder "
                              f"(tools/export_model.py writes one)") from None
        except OSError as e:
            raise ExportError(f"{path}: cannot read ({e.strerror or e})") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExportError(f"{path}: not valid JSON ({' '.join(str(e).split())})") from e
        if not isinstance(data, dict):
            raise ExportError(f"{path}: expected a JSON object, found {type(data).__name__}")
        version = data.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:  # true == 1 in Python
            raise ExportError(f"{path}: format_version {version!r} is not supported (this "
                              f"bikestate reads version {FORMAT_VERSION}); export the model "
                              f"again with this bikestate's tools/export_model.py")
        try:
            fmt = data["format"]
            if fmt not in GRAPH_FILES:
                raise ValueError(f"format {fmt!r} is not one of {', '.join(GRAPH_FILES)}")
            inputs = data["input"]
            state_names = tuple(data["state_names"])
            info = cls(
                export_dir=export_dir,
                format=fmt,
                graph_path=os.path.join(export_dir, data["graph"]),
                part_names=tuple(data["part_names"]),
                state_names=state_names,
                input_format=inputs["format"],
                pixel_mean=tuple(float(v) for v in inputs["pixel_mean"]),
                pixel_std=tuple(float(v) for v in inputs["pixel_std"]),
                min_size_test=int(inputs["min_size_test"]),
                max_size_test=int(inputs["max_size_test"]),
                detection_score_thresh=float(data["detection_score_thresh"]),
                operating_point=OperatingPoint.from_dict(data["operating_point"], path,
                                                         state_names),
                data=data,
            )
        except ExportError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
            raise ExportError(f"{path}: not a valid model.json ({what})") from e
        except ConfigError as e:  # a bad operating point; the message names the file
            raise ExportError(str(e)) from e
        if not (info.min_size_test > 0 and info.max_size_test > 0
                and 0.0 <= info.detection_score_thresh <= 1.0):
            raise ExportError(f"{path}: not a valid model.json (test sizes "
                              f"{info.min_size_test} / {info.max_size_test} must be positive, "
                              f"detection_score_thresh {info.detection_score_thresh} in [0, 1])")
        if info.input_format not in ("BGR", "RGB"):
            raise ExportError(f"{path}: input format must be BGR or RGB, not "
                              f"{info.input_format!r}")
        if not os.path.isfile(info.graph_path):
            raise ExportError(f"{info.graph_path}: missing; the export folder is incomplete, "
                              f"export the model again")
        return info
