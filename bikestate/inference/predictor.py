"""Run a trained bikestate model on photos: one image or batches, CPU or GPU.

:class:`BikeStatePredictor` is detectron2's ``DefaultPredictor`` grown for the product: it
takes one BGR image or a list of them, resizes them to the configured test size (exactly as
evaluation does, ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), runs the model in batches, and
returns the predictions in the pixels of the original images, on the CPU.
"""
import logging

import torch
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as d2_utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint import load_model_weights
from ..constants import PART_NAMES
from ..config import add_bikestate_config, merge_config_file
from ..utils.errors import ConfigError
from ..verdict import load_operating_point

logger = logging.getLogger(__name__)

# Fields every prediction of a bikestate model carries (docs/data_formats.md, "Instances fields").
PREDICTION_FIELDS = ("pred_boxes", "scores", "pred_classes", "pred_states", "state_scores")


def resolve_part_names(cfg):
    """Names of the model's classes, indexed by contiguous class id.

    Taken from the metadata of ``cfg.DATASETS.TEST[0]`` when that dataset is registered in this
    process with ``thing_classes`` (a dataset with other parts than DelftBikes'), else
    :data:`bikestate.constants.PART_NAMES`. Raises :class:`ConfigError` when their number does
    not match ``MODEL.ROI_HEADS.NUM_CLASSES``: every label would be wrong otherwise.
    """
    names = None
    for dataset_name in cfg.DATASETS.TEST[:1]:
        if dataset_name in MetadataCatalog.list():
            names = MetadataCatalog.get(dataset_name).get("thing_classes", None)
    source = f"metadata of dataset {cfg.DATASETS.TEST[0]!r}" if names else "bikestate.PART_NAMES"
    names = list(names or PART_NAMES)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if len(names) != num_classes:
        raise ConfigError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but {source} names {len(names)} "
            f"parts; set NUM_CLASSES {len(names)} or register the dataset the model was "
            f"trained on"
        )
    return names


def predictor_config(config_file, opts=(), score_thresh=None):
    """The frozen config a predictor runs with, and the verdict rule's operating point.

    Args:
        config_file (str): the model's config.
        opts (Sequence[str]): ``KEY VALUE`` overrides (``MODEL.WEIGHTS model.pth``, ...).
        score_thresh (float or None): a user's explicit score threshold; default: the
            ``score_thresh`` of the thresholds.json beside the weights (or of
            ``TEST.BIKESTATE.THRESHOLDS_FILE``), else ``TEST.BIKESTATE.VERIFY_SCORE_THRESH``.

    Returns:
        (CfgNode, OperatingPoint): the config, whose detector keeps the boxes scoring above
        the config's ``SCORE_THRESH_TEST`` (those the evaluator scores; lower ones too when the
        operating point's score threshold is lower) and whose ``MODEL.DEVICE`` is the CPU when
        it names a CUDA device this machine lacks (with a warning); the operating point, whose
        score threshold the report and predictions.json apply.

    Raises:
        ConfigError: a bad config file, override or threshold, as one line.
    """
    from detectron2.config import get_cfg

    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"config overrides come in KEY VALUE pairs; got {' '.join(opts)}")
    cfg = get_cfg()
    add_bikestate_config(cfg)
    merge_config_file(cfg, config_file)
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"{config_file}: {' '.join(str(e).split())}") from e
    if score_thresh is not None and not 0.0 <= score_thresh <= 1.0:
        raise ConfigError(f"the confidence threshold must be in [0, 1], got {score_thresh}")
    point = load_operating_point(cfg.TEST.BIKESTATE.THRESHOLDS_FILE, cfg.MODEL.WEIGHTS,
                                 default_score_thresh=cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH,
                                 score_thresh=score_thresh)
    # The detector keeps every box the evaluation and the calibration saw (the config's
    # threshold): the verdict rule, not the detector, applies the operating point's score
    # threshold, and the vote of the ``vote`` presence rule counts all of a part's boxes.
    # Only a lower explicit threshold lowers the detector's.
    for head in (cfg.MODEL.ROI_HEADS, cfg.MODEL.RETINANET):
        head.SCORE_THRESH_TEST = min(head.SCORE_THRESH_TEST, point.score_thresh)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but there is no CUDA GPU: running on the CPU",
                       cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg, point


class _NonEmptyResize(T.Augmentation):
    """detectron2's test resize, except that no side of the result is ever 0 pixels.

    ``ResizeShortestEdge`` rounds each side to the nearest pixel: a 1x500 photo at
    ``MIN_SIZE_TEST`` 128 / ``MAX_SIZE_TEST`` 192 would become 0x192, which nothing can resize
    to. Such a side becomes 1 pixel; boxes still map back to the original pixels, whose scale
    is computed per side.
    """

    def __init__(self, resize):
        super().__init__()
        self.resize = resize

    def get_transform(self, image):
        transform = self.resize.get_transform(image)
        if isinstance(transform, T.ResizeTransform) and min(transform.new_h, transform.new_w) < 1:
            return T.ResizeTransform(transform.h, transform.w, max(transform.new_h, 1),
                                     max(transform.new_w, 1), transform.interp)
        return transform


class BikeStatePredictor:
    """Predict bike parts and their states on BGR images.

    Compared to calling the model directly it:

    1. builds the model from ``cfg`` and loads ``cfg.MODEL.WEIGHTS``;
    2. takes BGR uint8 images (as ``cv2.imread`` or :func:`bikestate.inference.read_image`
       give) and converts them to ``cfg.INPUT.FORMAT``;
    3. resizes them with the test-time augmentation of the config
       (``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``), the one evaluation uses, keeping
       at least one pixel per side for photos as narrow as 1x500;
    4. maps boxes back to the pixels of the original image (detectron2's
       ``detector_postprocess``, via the ``height``/``width`` inputs);
    5. returns :class:`Instances` on the CPU.

    Attributes:
        cfg (CfgNode): a frozen copy of the config.
        model (nn.Module): the model, in eval mode, on ``cfg.MODEL.DEVICE``.
        part_names (list[str]): class names, see :func:`resolve_part_names`.
        operating_point (OperatingPoint): the verdict rule's thresholds its reports use.
        metadata (Metadata or None): metadata of ``cfg.DATASETS.TEST[0]``, when registered.

    Examples:
    ::
        predictor = BikeStatePredictor(cfg)
        instances = predictor(cv2.imread("bike.jpg"))
        instances.pred_states  # int64 (N,), 0 intact, 1 damaged, 2 absent, 3 occluded
    """

    def __init__(self, cfg, operating_point=None):
        """
        Args:
            cfg (CfgNode): the model's config, ``MODEL.WEIGHTS`` the weights to load.
            operating_point (OperatingPoint or None): the verdict rule's thresholds for
                reports; default: ``TEST.BIKESTATE.THRESHOLDS_FILE``, else thresholds.json
                beside ``MODEL.WEIGHTS``, else the default rule at
                ``TEST.BIKESTATE.VERIFY_SCORE_THRESH``.
        """
        self.cfg = cfg.clone()
        self.cfg.freeze()
        device = self.cfg.MODEL.DEVICE
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"MODEL.DEVICE is {device!r} but no CUDA GPU is available; "
                              f"use MODEL.DEVICE cpu")
        self.part_names = resolve_part_names(self.cfg)
        self.operating_point = operating_point or load_operating_point(
            self.cfg.TEST.BIKESTATE.THRESHOLDS_FILE, self.cfg.MODEL.WEIGHTS,
            default_score_thresh=self.cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH)
        self.metadata = None
        if len(self.cfg.DATASETS.TEST) and self.cfg.DATASETS.TEST[0] in MetadataCatalog.list():
            self.metadata = MetadataCatalog.get(self.cfg.DATASETS.TEST[0])

        self.model = build_model(self.cfg)
        self.model.eval()
        load_model_weights(self.model, self.cfg.MODEL.WEIGHTS,
                           allow_pickled=self.cfg.MODEL.ALLOW_PICKLED_WEIGHTS)

        self.aug = T.AugmentationList([
            _NonEmptyResize(aug) if isinstance(aug, T.ResizeShortestEdge) else aug
            for aug in d2_utils.build_augmentation(self.cfg, is_train=False)
        ])
        self.input_format = self.cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be RGB or BGR, not {self.input_format!r}")

    def __call__(self, original_image):
        """
        Args:
            original_image (np.ndarray): uint8 image of shape (H, W, 3), BGR order.

        Returns:
            Instances: the predictions for the image, on the CPU, with image_size (H, W) and
            fields ``pred_boxes`` (Boxes, XYXY in original pixels), ``scores`` (float (N,)),
            ``pred_classes`` (int64 (N,)), ``pred_states`` (int64 (N,)) and ``state_scores``
            (float (N, 4), rows sum to 1).
        """
        return self.predict_batch([original_image], batch_size=1)[0]

    def _to_model_input(self, original_image):
        """BGR (H, W, 3) uint8 -> the model's input dict: resized CHW float tensor + H, W."""
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR image, got shape {original_image.shape}")
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        aug_input = T.AugInput(original_image)
        self.aug(aug_input)
        image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return {"image": image, "height": height, "width": width}

    def predict_batch(self, images, batch_size=4):
        """Predict on several images, ``batch_size`` at a time through the model.

        Args:
            images (Iterable[np.ndarray]): uint8 BGR images of shape (H_i, W_i, 3), any sizes.
            batch_size (int): images per forward pass; more is faster on a GPU until memory
                runs out, and makes little difference on a CPU.

        Returns:
            list[Instances]: one per image, in order, as in :meth:`__call__`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results, chunk = [], []
        for image in images:
            chunk.append(self._to_model_input(image))
            if len(chunk) == batch_size:
                results.extend(self._run(chunk))
                chunk = []
        if chunk:
            results.extend(self._run(chunk))
        return results

    def _run(self, inputs):
        with torch.no_grad():
            outputs = self.model(inputs)
        results = []
        for out in outputs:
            instances = out["instances"].to("cpu")
            missing = [f for f in PREDICTION_FIELDS if not instances.has(f)]
            if missing:
                raise ConfigError(
                    f"the model's predictions lack {', '.join(missing)}: "
                    f"MODEL.ROI_HEADS.NAME {self.cfg.MODEL.ROI_HEADS.NAME!r} is not a bikestate "
                    f"state head (use StateROIHeads)"
                )
            results.append(instances)
        return results
