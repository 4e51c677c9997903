"""Run an exported bikestate model: onnxruntime (no torch, no detectron2) or TorchScript.

::

    from bikestate.deploy import OnnxBikeStatePredictor
    from bikestate.inference.images import read_image
    from bikestate.inference.report import build_report

    predictor = OnnxBikeStatePredictor("export/")          # the folder tools/export_model.py wrote
    detections = predictor(read_image("bike.jpg"))         # BGR uint8 (H, W, 3) -> Detections
    report = build_report("bike.jpg", detections, predictor.part_names,
                          predictor.operating_point)

Each predictor resizes the image as the model was tested, runs the graph and maps the boxes back
to the original pixels; it returns :class:`bikestate.inference.detections.Detections`, which the
records of predictions.json, the inspection report and the pictures take as they take the
``Instances`` of :class:`bikestate.inference.BikeStatePredictor`.
"""
import numpy as np

from ..inference.detections import Detections
from ..utils.errors import ConfigError, ExportError
from .model_info import OUTPUT_NAMES, ModelInfo
from .preprocess import resize_image, resize_shape, to_original_pixels

__all__ = ["ExportedBikeStatePredictor", "OnnxBikeStatePredictor",
           "TorchScriptBikeStatePredictor", "load_predictor"]


class ExportedBikeStatePredictor:
    """What every runtime of an export shares: pre- and post-processing (subclasses run the
    graph in :meth:`_run_graph`).

    Attributes:
        info (ModelInfo): the export's model.json.
        part_names (tuple[str]): class names by contiguous id.
        state_names (tuple[str]): state names by index.
        operating_point (OperatingPoint): the verdict rule the export carries (the calibration
            of the exported weights, else the default rule), with ``score_thresh`` replaced
            when one is given.
        score_thresh (float): the score threshold of that rule (the report and
            predictions.json apply it; the detections returned are all the graph keeps, as
            the PyTorch predictor returns all its detector keeps, so that the ``vote``
            presence rule counts the same boxes in either runtime).
    """

    format = None  # the export format a subclass runs

    def __init__(self, export_dir, score_thresh=None):
        """
        Args:
            export_dir (str): a folder written by ``tools/export_model.py``.
            score_thresh (float or None): the verdict rule's score threshold; it cannot be
                below the export's ``detection_score_thresh``, which the graph applies. None:
                the operating point's.
        """
        self.info = ModelInfo.load(export_dir)
        if self.info.format != self.format:
            raise ExportError(f"{export_dir} holds a {self.info.format} export, not "
                              f"{self.format}")
        self.part_names = self.info.part_names
        self.state_names = self.info.state_names
        self.operating_point = self.info.operating_point
        self.score_thresh = self.operating_point.score_thresh
        if score_thresh is not None:
            if score_thresh < self.info.detection_score_thresh:
                raise ConfigError(
                    f"{export_dir}: the export keeps detections scoring above "
                    f"{self.info.detection_score_thresh} only, {score_thresh} was asked; export "
                    f"again with MODEL.ROI_HEADS.SCORE_THRESH_TEST {score_thresh}")
            self.score_thresh = float(score_thresh)
            self.operating_point = self.operating_point.with_score_thresh(score_thresh)

    def __call__(self, original_image):
        """
        Args:
            original_image (np.ndarray): uint8 image of shape (H, W, 3), BGR order (as
                ``cv2.imread`` and :func:`bikestate.inference.images.read_image` give).

        Returns:
            Detections: in the pixels of ``original_image``.
        """
        if not isinstance(original_image, np.ndarray) or original_image.ndim != 3 \
                or original_image.shape[2] != 3:
            shape = getattr(original_image, "shape", type(original_image).__name__)
            raise ValueError(f"expected an (H, W, 3) BGR image, got {shape}")
        image = original_image if self.info.input_format == "BGR" else original_image[:, :, ::-1]
        height, width = image.shape[:2]
        resized_size = resize_shape(height, width, self.info.min_size_test,
                                    self.info.max_size_test)
        resized = resize_image(image.astype(np.uint8, copy=False), *resized_size)
        graph_input = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)
        outputs = dict(zip(OUTPUT_NAMES, self._run_graph(graph_input)))
        boxes, keep = to_original_pixels(outputs["boxes"], resized_size, (height, width))
        return Detections(image_size=(height, width), boxes=boxes,
                          scores=outputs["scores"][keep].astype(np.float32),
                          classes=outputs["classes"][keep].astype(np.int64),
                          states=outputs["states"][keep].astype(np.int64),
                          state_scores=outputs["state_scores"][keep].astype(np.float32))

    def predict_batch(self, images, batch_size=1):
        """:meth:`__call__` on each image (the graph takes one image at a time; ``batch_size``
        is accepted for the interface of :class:`BikeStatePredictor`)."""
        return [self(image) for image in images]

    def _run_graph(self, image):
        """(3, H, W) float32 -> the graph's outputs, numpy arrays in :data:`OUTPUT_NAMES`
        order."""
        raise NotImplementedError


class OnnxBikeStatePredictor(ExportedBikeStatePredictor):
    """An ONNX export run by onnxruntime on the CPU; needs neither torch nor detectron2.

    Example::

        predictor = OnnxBikeStatePredictor("export/")
        detections = predictor(cv2.imread("bike.jpg"))
        detections.states  # int64 (N,), 0 intact, 1 damaged, 2 absent, 3 occluded
    """

    format = "onnx"

    def __init__(self, export_dir, score_thresh=None, num_threads=None):
        """
        Args:
            export_dir, score_thresh: see :class:`ExportedBikeStatePredictor`.
            num_threads (int or None): onnxruntime's intra-op threads; None: its default (one
                per core).
        """
        super().__init__(export_dir, score_thresh)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its graph-optimizer notices are not ours
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                self.info.graph_path, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  onnxruntime raises its own exception types
            raise ExportError(f"{self.info.graph_path}: onnxruntime cannot load the graph "
                              f"({' '.join(str(e).split())[:300]})") from e
        self._input_name = self.session.get_inputs()[0].name

    def _run_graph(self, image):
        return self.session.run(list(OUTPUT_NAMES), {self._input_name: image})


class TorchScriptBikeStatePredictor(ExportedBikeStatePredictor):
    """A TorchScript export run by torch (with torchvision's operators), without detectron2."""

    format = "torchscript"

    def __init__(self, export_dir, score_thresh=None):
        super().__init__(export_dir, score_thresh)
        import torch
        import torchvision  # noqa: F401  registers the nms and roi_align operators

        try:
            self.module = torch.jit.load(self.info.graph_path, map_location="cpu")
        except Exception as e:  # noqa: BLE001  torch raises RuntimeError or its own errors
            raise ExportError(f"{self.info.graph_path}: torch cannot load the graph "
                              f"({' '.join(str(e).split())[:300]})") from e
        self._torch = torch

    def _run_graph(self, image):
        with self._torch.no_grad():
            outputs = self.module(self._torch.from_numpy(image))
        return [o.numpy() for o in outputs]


def load_predictor(export_dir, score_thresh=None, **kwargs):
    """The predictor of the export in ``export_dir``, chosen by its model.json's format."""
    fmt = ModelInfo.load(export_dir).format
    cls = OnnxBikeStatePredictor if fmt == "onnx" else TorchScriptBikeStatePredictor
    return cls(export_dir, score_thresh=score_thresh, **kwargs)

