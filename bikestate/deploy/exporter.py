"""Export a bikestate model to ONNX or TorchScript, with the ``model.json`` its runtimes read.

The whole model, detector and state branch, is traced with detectron2's
:class:`~detectron2.export.TracingAdapter` on one image; the graph takes any image size
(``tests/deploy`` runs it on others). What a trace of a detectron2 model needs:

* ONNX opset >= 16: detectron2's ``ROIAlign`` is the *aligned* one (half-pixel offsets), which
  ONNX's ``RoiAlign`` has only since opset 16 (``coordinate_transformation_mode``); with an older
  opset torchvision approximates it by shifting the boxes. Older opsets are refused.
* the TorchScript-based ONNX exporter (``dynamo=False``): torch 2.14's default, the dynamo
  exporter, cannot take detectron2's Python-level structures (``Instances``, ``Boxes``).
* the number of detections stays symbolic: bikestate's ROI heads count rows with
  ``tensor.shape[0]``, which a trace records as an operation, not with ``len()``, which it
  records as the tracing example's number (:mod:`bikestate.modeling.roi_heads`).
* the graph's boxes are in the pixels of the resized image it was given; mapping them to the
  original image is done by the runtime (:func:`bikestate.deploy.preprocess.to_original_pixels`),
  since it needs the original size, which the graph never sees.

This module needs torch and detectron2; the runtimes do not (:mod:`bikestate.deploy`).
"""
import contextlib
import json
import os
import shutil
import tempfile
import warnings

import detectron2
import numpy as np
import torch
from detectron2.export import TracingAdapter
from detectron2.modeling import build_model

from .. import __version__
from ..constants import STATE_NAMES
from ..utils.errors import ConfigError, ExportError, ExportMismatchError
from ..verdict import load_operating_point
from .model_info import FORMAT_VERSION, GRAPH_FILES, MODEL_JSON, OUTPUT_NAMES
from .preprocess import resize_image, resize_shape

__all__ = ["EXPORT_FORMATS", "DEFAULT_OPSET", "MIN_OPSET", "build_export_model",
           "check_export", "export_model", "sample_image"]

EXPORT_FORMATS = tuple(GRAPH_FILES)
# The first opset whose RoiAlign has half-pixel offsets (detectron2's aligned ROIAlign).
MIN_OPSET = 16
DEFAULT_OPSET = 17


class _ExportableModel(torch.nn.Module):
    """The model as a function of one resized image: (3, H, W) float32 -> the tuple of
    :data:`~bikestate.deploy.model_info.OUTPUT_NAMES`, in the resized image's pixels."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        instances = self.model.inference([{"image": image}], do_postprocess=False)[0]
        return (instances.pred_boxes.tensor, instances.scores, instances.pred_classes,
                instances.pred_states, instances.state_scores)


class _NeverEmptyStateHead(torch.nn.Module):
    """A state head that runs on one extra zero row and drops its output again.

    The exported graph must also answer a photo with no detection; a state head with
    GroupNorm traces to a reshape of its N rows into (N, groups, -1), which onnxruntime
    cannot do for N = 0. The padding row keeps every tensor of the head non-empty and
    changes no other row's output (the head treats rows independently).
    """

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, features, classes=None):
        padded = torch.cat([features, features.new_zeros((1,) + tuple(features.shape[1:]))])
        if classes is not None:
            classes = torch.cat([classes, classes.new_zeros((1,))])
        return self.head(padded, classes)[:-1]


@contextlib.contextmanager
def _state_head_never_empty(model):
    """Trace ``model`` with :class:`_NeverEmptyStateHead` around its state head (restored
    afterwards: the caller's model is left as it was)."""
    heads = getattr(model, "roi_heads", None)
    head = getattr(heads, "state_head", None)
    if head is None:
        yield
        return
    heads.state_head = _NeverEmptyStateHead(head)
    try:
        yield
    finally:
        heads.state_head = head


def build_export_model(cfg):
    """The model of ``cfg`` with ``cfg.MODEL.WEIGHTS`` loaded, in eval mode on the CPU."""
    from ..checkpoint import load_model_weights

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    load_model_weights(model, cfg.MODEL.WEIGHTS, allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS)
    return model.eval()


def sample_image(cfg, seed=0, portrait=False):
    """The tracing example: a SynthBikes picture (BGR uint8) of the config's test size, 4:3
    landscape (or 3:4 portrait), so that the trace goes through every stage with detections to
    carry."""
    from ..synth import render_bike

    short = max(cfg.INPUT.MIN_SIZE_TEST, 32)
    long = min(int(short * 4 / 3), max(cfg.INPUT.MAX_SIZE_TEST, short))
    width, height = (short, long) if portrait else (long, short)
    image_rgb, _ = render_bike(np.random.default_rng(seed), width, height)
    return np.ascontiguousarray(image_rgb[:, :, ::-1])


def graph_input(cfg, image_bgr):
    """The graph's input for a BGR uint8 image: resized, channels as ``INPUT.FORMAT``,
    float32 (3, H, W)."""
    image = image_bgr if cfg.INPUT.FORMAT == "BGR" else image_bgr[:, :, ::-1]
    size = resize_shape(*image.shape[:2], cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    resized = resize_image(image, *size)
    return torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32))


def _model_info(cfg, fmt, opset, part_names, config_file):
    point = load_operating_point(cfg.TEST.BIKESTATE.THRESHOLDS_FILE, cfg.MODEL.WEIGHTS,
                                 default_score_thresh=cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH)
    info = {
        "format_version": FORMAT_VERSION,
        "format": fmt,
        "graph": GRAPH_FILES[fmt],
        "part_names": list(part_names),
        "state_names": list(STATE_NAMES),
        "input": {
            "format": cfg.INPUT.FORMAT,
            "layout": "float32 (3, H, W), 0-255, resized by the test resize; the pixel mean "
                      "and std are applied inside the graph",
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
            "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        },
        "outputs": list(OUTPUT_NAMES),
        "detection_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        "operating_point": dict(point.to_dict(), source=point.source),
        "exported_from": {"config_file": config_file, "weights": cfg.MODEL.WEIGHTS,
                          "bikestate": __version__, "torch": torch.__version__,
                          "detectron2": detectron2.__version__},
    }
    if fmt == "onnx":
        info["onnx_opset"] = opset
    return info


def _trace_outputs(adapter, example, path, fmt, opset):
    """Write the graph of ``adapter`` traced on ``example`` to ``path``."""
    with warnings.catch_warnings():
        # The tracer warns at every Python branch of detectron2 (and torch at its own
        # deprecations); the branches are the ones the module docstring lists, and the parity
        # tests check the graph on other images.
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace(adapter, (example,), check_trace=False)
            traced.save(path)
            return
        dynamic = {"image": {1: "height", 2: "width"}}
        dynamic.update({name: {0: "detections"} for name in OUTPUT_NAMES})
        torch.onnx.export(adapter, (example,), path, opset_version=opset, dynamo=False,
                          input_names=["image"], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, do_constant_folding=True)


def export_model(cfg, output_dir, fmt, opset=DEFAULT_OPSET, example_bgr=None,
                 config_file=None, model=None, check_bgr=None):
    """Export the model of ``cfg`` (weights ``cfg.MODEL.WEIGHTS``) into ``output_dir``.

    Args:
        cfg (CfgNode): the model's config.
        output_dir (str): folder for the graph and model.json (created once the export is
            complete; the files of an earlier export there are replaced then).
        fmt (str): ``onnx`` or ``torchscript``.
        opset (int): ONNX opset, at least :data:`MIN_OPSET`.
        example_bgr (np.ndarray or None): uint8 (H, W, 3) BGR tracing example; default
            :func:`sample_image`.
        config_file (str or None): recorded in model.json.
        model (nn.Module or None): the model to export; default :func:`build_export_model`.
        check_bgr (np.ndarray or None): an image on which the export must agree with the model
            (:func:`check_export`) before it is moved into ``output_dir``.

    Returns:
        dict: the model.json written, with ``check``: the result of :func:`check_export`
        (None without ``check_bgr``).
    """
    from ..inference.predictor import resolve_part_names

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not "
                          f"{fmt!r}")
    if fmt == "onnx" and opset < MIN_OPSET:
        raise ConfigError(f"ONNX opset {opset} cannot express detectron2's aligned ROIAlign "
                          f"(half-pixel RoiAlign needs opset >= {MIN_OPSET})")
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        raise ConfigError(f"INPUT.FORMAT must be RGB or BGR, not {cfg.INPUT.FORMAT!r}")
    part_names = resolve_part_names(cfg)
    model = build_export_model(cfg) if model is None else model
    example = graph_input(cfg, sample_image(cfg) if example_bgr is None else example_bgr)
    adapter = TracingAdapter(_ExportableModel(model), (example,)).eval()
    info = _model_info(cfg, fmt, opset, part_names, config_file)

    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ExportError(f"output folder {output_dir} is a file")
    parent = os.path.dirname(os.path.abspath(output_dir))
    try:
        # The graph and model.json are written beside the output folder first, and moved into
        # it (created then) only once both are complete.
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    except OSError as e:
        raise ExportError(f"cannot create output folder {output_dir} "
                          f"({e.strerror or e})") from e
    try:
        graph = os.path.join(staging, GRAPH_FILES[fmt])
        with _state_head_never_empty(model):
            _trace_outputs(adapter, example, graph, fmt, opset)
        with open(os.path.join(staging, MODEL_JSON), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        check = None if check_bgr is None else check_export(cfg, model, staging, check_bgr)
        os.makedirs(output_dir, exist_ok=True)
        # The old model.json first and model.json last: at every moment the folder's
        # model.json, if any, names a graph the folder holds, and no graph of another format
        # is left beside the new one.
        for name in (MODEL_JSON, *(f for f in GRAPH_FILES.values() if f != GRAPH_FILES[fmt])):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(output_dir, name))
        for name in (GRAPH_FILES[fmt], MODEL_JSON):
            os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dict(info, check=check)


def check_export(cfg, model, output_dir, image_bgr, box_tol=0.5, prob_tol=1e-4):
    """Run the export in ``output_dir`` and the eager ``model`` on ``image_bgr``; raise
    :class:`ExportMismatchError` unless they agree: the same detections, classes and states,
    boxes within ``box_tol`` pixels, scores and state probabilities within ``prob_tol``.

    Returns:
        dict: ``detections`` (their number), ``max_box_diff`` (pixels), ``max_prob_diff``.
    """
    from ..inference.detections import Detections
    from .predictor import load_predictor

    exported = load_predictor(output_dir)(image_bgr)
    height, width = image_bgr.shape[:2]
    with torch.no_grad():
        instances = model([{"image": graph_input(cfg, image_bgr), "height": height,
                            "width": width}])[0]["instances"]
    eager = Detections.from_instances(instances)
    where = f"the exported graph disagrees with the model on a {width}x{height} image"
    if len(exported) != len(eager):
        raise ExportMismatchError(f"{where}: {len(exported)} detections instead of {len(eager)}")
    if not (np.array_equal(exported.classes, eager.classes)
            and np.array_equal(exported.states, eager.states)):
        raise ExportMismatchError(f"{where}: other parts or states")
    box_diff = float(np.abs(exported.boxes - eager.boxes).max(initial=0.0))
    prob_diff = float(max(np.abs(exported.scores - eager.scores).max(initial=0.0),
                          np.abs(exported.state_scores - eager.state_scores).max(initial=0.0)))
    if box_diff > box_tol or prob_diff > prob_tol:
        raise ExportMismatchError(f"{where}: boxes differ by up to {box_diff:.3g} px, scores or state "
                          f"probabilities by up to {prob_diff:.3g}")
    return {"detections": len(eager), "max_box_diff": box_diff, "max_prob_diff": prob_diff}
