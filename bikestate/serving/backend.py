"""What the service runs photos through: the backend, and loading it from a model folder.

A backend is any object with one method,

    ``inspect(image_bgr, file_name, draw=False, notes=()) -> ImageResult``

(:class:`bikestate.inference.ImageResult`: the photo's report, its picture when ``draw``, or a
one-line error) and three attributes the service shows: ``part_names``, ``operating_point``
(the verdict rule's thresholds) and ``info`` (a JSON-able dict for ``GET /v1/model``).

:class:`PredictorBackend` makes one of any predictor with ``BikeStatePredictor``'s
``predict_batch`` and ``part_names`` (the PyTorch predictor, or an exported model's with the
same interface); :func:`load_predictor_backend` builds it from a training folder, a config +
weights, or an export folder of ``tools/export_model.py`` (onnxruntime or TorchScript).
"""
import os

from ..checkpoint.training_folder import TRAINING_FOLDER_CONFIG, resolve_training_folder
from ..deploy.model_info import MODEL_JSON
from ..inference import BikeStatePredictor, inspect_image, predictor_config
from ..utils.errors import ConfigError
from ..utils.io import file_sha256

__all__ = ["PredictorBackend", "load_predictor_backend", "resolve_model"]

class PredictorBackend:
    """A backend around a predictor.

    Args:
        predictor: an object with ``predict_batch(images, batch_size) -> list[Instances]`` and
            ``part_names``, as :class:`BikeStatePredictor`.
        operating_point (OperatingPoint): the verdict rule of the reports.
        info (dict): what ``GET /v1/model`` shows about the model (config, weights, ...).
    """

    def __init__(self, predictor, operating_point, info):
        self.predictor = predictor
        self.part_names = list(predictor.part_names)
        self.operating_point = operating_point
        self.info = dict(info)

    def inspect(self, image_bgr, file_name, draw=False, notes=()):
        """Inspect one photo.

        Args:
            image_bgr (np.ndarray): uint8 (H, W, 3) upright photo in BGR order.
            file_name (str): the photo's name in its report.
            draw (bool): also draw the predictions (``ImageResult.picture``, JPEG bytes).
            notes (Sequence[str]): what reading the photo chose (e.g. its first frame).

        Returns:
            ImageResult: ``report`` as ``tools/predict.py`` writes it for the photo, or
            ``error``.
        """
        return inspect_image(self.predictor, image_bgr, file_name,
                             operating_point=self.operating_point, draw=draw, notes=notes)


def resolve_model(model, config_file=None):
    """(config file, weights file) of ``--model`` (and ``--config-file``).

    Args:
        model (str): a training output folder (``config.yaml`` and ``model_best.pth`` or
            ``model_final.pth``), a weights file, or an export folder of
            ``tools/export_model.py`` (``model.json``; then the config is None).
        config_file (str or None): the config; required with a weights file, and overrides a
            training folder's ``config.yaml``.

    Raises:
        ConfigError: one line saying what is missing.
    """
    if os.path.isdir(model) and os.path.isfile(os.path.join(model, MODEL_JSON)):
        return None, model  # an export folder: model.json says the rest
    if os.path.isdir(model):
        return resolve_training_folder(model, config_file)
    if not os.path.isfile(model):
        raise ConfigError(f"{model}: no such model folder or weights file")
    if config_file is None:
        raise ConfigError(f"{model} is a weights file: give its config with --config-file")
    return config_file, model


def load_predictor_backend(model, config_file=None, opts=(), threads=None):
    """The backend of ``--model`` (see :func:`resolve_model`): PyTorch for a training folder or a
    weights file, onnxruntime or TorchScript (:mod:`bikestate.deploy`) for an export folder.

    The verdict rule is :func:`bikestate.inference.predictor_config`'s: the thresholds.json
    beside the weights when there is one, as ``tools/predict.py`` uses it; an export carries
    its own in model.json. ``opts`` are further ``KEY VALUE`` config overrides (``MODEL.DEVICE
    cuda``, ``INPUT.MIN_SIZE_TEST 480``); an export takes none. ``threads``: onnxruntime's
    intra-op threads for an ONNX export (the PyTorch backend's are torch's, set by the worker).
    """
    # A training folder's config.yaml is named with its folder (output/demo/train -> train/...).
    config_name = (os.path.basename(config_file) if config_file else
                   os.path.join(os.path.basename(os.path.normpath(model)), TRAINING_FOLDER_CONFIG))
    config_file, weights = resolve_model(model, config_file)
    if config_file is None:
        return _export_backend(model, opts, threads)
    cfg, point = predictor_config(config_file, ["MODEL.WEIGHTS", weights, *opts])
    predictor = BikeStatePredictor(cfg, operating_point=point)
    weights = cfg.MODEL.WEIGHTS
    info = {"backend": "pytorch", "config_file": config_file, "config_name": config_name,
            "weights": weights,
            "weights_sha256": file_sha256(weights) if os.path.isfile(weights) else None,
            "device": cfg.MODEL.DEVICE, "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
            "max_size_test": cfg.INPUT.MAX_SIZE_TEST}
    return PredictorBackend(predictor, point, info)


def _export_backend(export_dir, opts, threads):
    from ..deploy import ModelInfo, load_predictor

    if opts:
        raise ConfigError(f"{export_dir} is an exported model: config options "
                          f"({' '.join(map(str, opts))}) do not apply to it; export again instead")
    extra = {"num_threads": threads} if threads and ModelInfo.load(export_dir).format == "onnx" \
        else {}
    predictor = load_predictor(export_dir, **extra)
    model_info = predictor.info
    exported_from = (model_info.data or {}).get("exported_from") or {}
    info = {"backend": "onnxruntime" if model_info.format == "onnx" else "torchscript",
            "config_file": exported_from.get("config_file"),
            "config_name": os.path.basename(exported_from.get("config_file") or "") or None,
            "weights": model_info.graph_path, "weights_sha256": file_sha256(model_info.graph_path),
            "device": "cpu", "min_size_test": model_info.min_size_test,
            "max_size_test": model_info.max_size_test}
    return PredictorBackend(predictor, predictor.operating_point, info)
