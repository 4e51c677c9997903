"""Dataset mapper: one registered dataset dict -> an augmented image and ``Instances`` with states.

Modelled on detectron2's :class:`~detectron2.data.DatasetMapper` (which it subclasses) and on
DensePose's mapper: the boxes and classes are those of detectron2's
``transform_instance_annotations`` and ``annotations_to_instances`` (computed for all boxes of an
image at once, :func:`transform_boxes`), and the extra per-box target, ``gt_states``, is added
from the same annotations in the same order, before ``filter_empty_instances`` removes boxes that
a crop emptied. That filter indexes every field of the ``Instances`` with one mask, so boxes,
classes and states stay aligned.
"""
import copy
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode, Boxes, Instances

from ..constants import STATE_NAMES
from ..utils.errors import ConfigError, DataError
from ..utils.images import UnreadableImageError, read_image

logger = logging.getLogger(__name__)

__all__ = [
    "BikeStateDatasetMapper",
    "build_bike_augmentation",
    "RandomSaturationWithFormat",
    "UnreadableImageError",
    "ImageSizeMismatchError",
    "SkipUnreadableImages",
    "SKIPPED_KEY",
    "transform_boxes",
    "build_annotated_test_loader",
]


class ImageSizeMismatchError(UnreadableImageError):
    """An image whose size differs from the one in the annotations (the boxes would be wrong)."""


class RandomSaturationWithFormat(T.RandomSaturation):
    """detectron2's ``RandomSaturation`` with the grey level computed for the image's format.

    detectron2's version assumes RGB and weighs the channels 0.299 R + 0.587 G + 0.114 B.
    detectron2 reads images as BGR by default (``INPUT.FORMAT``), where those weights would
    treat blue as red; the reversed weights give the true luminance, so a BGR image is
    (de)saturated towards the same grey as its RGB twin.
    """

    _LUMA_WEIGHTS = {"RGB": (0.299, 0.587, 0.114), "BGR": (0.114, 0.587, 0.299)}

    def __init__(self, intensity_min, intensity_max, image_format="BGR"):
        if image_format not in self._LUMA_WEIGHTS:
            raise ValueError(f"saturation jitter needs an RGB or BGR image, got {image_format}")
        super().__init__(intensity_min, intensity_max)
        self.image_format = image_format

    def get_transform(self, image):
        assert image.shape[-1] == 3, "saturation jitter needs a 3-channel image"
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        # In float32, so that the blend runs in float32 too (float64 took twice as long).
        weights = np.asarray(self._LUMA_WEIGHTS[self.image_format], dtype=np.float32)
        grayscale = (image.astype(np.float32) @ weights)[:, :, np.newaxis]
        return T.BlendTransform(src_image=grayscale, src_weight=1 - w, dst_weight=w)


def build_bike_augmentation(cfg, is_train):
    """The augmentations of bike images, from ``cfg.INPUT``.

    Training: optional ``RandomCrop`` (``INPUT.CROP``; boxes are clipped to the crop and empty
    ones dropped by the mapper), ``ResizeShortestEdge`` (``MIN_SIZE_TRAIN``...), ``RandomFlip``
    (``INPUT.RANDOM_FLIP``) and brightness / contrast / saturation jitter
    (``INPUT.COLOR_JITTER``). Test: ``ResizeShortestEdge`` (``MIN_SIZE_TEST``) only.

    A horizontally flipped bike keeps its part labels. DelftBikes names parts after the bike's
    own front and back (``front_wheel``, ``back_light``), not after image left and right: a
    mirrored photo shows the same bike facing the other way, whose front wheel is still its
    front wheel. (Bikes in the data face both ways already.) So no label swap is needed, unlike
    left/right keypoints in detectron2's ``keypoint_hflip_indices``.

    Returns:
        list[Augmentation]
    """
    augs = utils.build_augmentation(cfg, is_train)  # ResizeShortestEdge [+ RandomFlip]
    if not is_train:
        return augs
    if cfg.INPUT.CROP.ENABLED:
        # Before resizing, as detectron2's DatasetMapper does: the crop size is relative to the
        # original photo and the network still sees its usual input size.
        augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    jitter = cfg.INPUT.COLOR_JITTER
    if jitter.ENABLED:
        # After resizing: photometric changes cost less on the smaller image.
        if jitter.BRIGHTNESS > 0:
            augs.append(T.RandomBrightness(1 - jitter.BRIGHTNESS, 1 + jitter.BRIGHTNESS))
        if jitter.CONTRAST > 0:
            augs.append(T.RandomContrast(1 - jitter.CONTRAST, 1 + jitter.CONTRAST))
        if jitter.SATURATION > 0:
            augs.append(RandomSaturationWithFormat(
                1 - jitter.SATURATION, 1 + jitter.SATURATION, image_format=cfg.INPUT.FORMAT))
    return augs


class BikeStateDatasetMapper(DatasetMapper):
    """Map a bike dataset dict to the model's input, with ``gt_states`` next to the boxes.

    Output dict (training): ``image`` (uint8 tensor, C x H x W, in ``INPUT.FORMAT``), ``height``
    and ``width`` (of the original image), ``file_name``, ``image_id`` and ``instances``: an
    ``Instances`` of N boxes with

    * ``gt_boxes``: ``Boxes`` (N x 4, XYXY in the augmented image),
    * ``gt_classes``: int64 (N,), contiguous part ids,
    * ``gt_states``: int64 (N,), 0 intact, 1 damaged, 2 absent, 3 occluded.

    Boxes whose state is in ``drop_states`` are left out (N counts only the others). An image
    without annotations gives N = 0 (all three fields empty). At test time
    (``is_train=False``) the annotations are removed, as detectron2's ``DatasetMapper`` does.

    Raises:
        UnreadableImageError: the image cannot be read or has another size than annotated.
        DataError: an annotation has no ``state`` (the file is not COCO-with-states).
    """

    @configurable
    def __init__(self, is_train, *, augmentations, image_format, drop_states=(), **kwargs):
        """
        Args:
            is_train (bool): training (keep and transform annotations) or inference.
            augmentations (list[Augmentation or Transform]): applied in order.
            image_format (str): format of the image tensor, e.g. "BGR" (``INPUT.FORMAT``).
            drop_states (iterable[int]): states whose boxes are removed from the annotations
                (``BIKESTATE.DATA.TRAIN_DROP_STATES``; the plain detector baseline drops absent).
            kwargs: the other arguments of detectron2's ``DatasetMapper``.
        """
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         **kwargs)
        self.drop_states = frozenset(int(s) for s in drop_states)

    @classmethod
    def from_config(cls, cfg, is_train=True):
        ret = super().from_config(cfg, is_train)
        ret["augmentations"] = build_bike_augmentation(cfg, is_train)
        unknown = [s for s in cfg.BIKESTATE.DATA.TRAIN_DROP_STATES if s not in STATE_NAMES]
        if unknown:
            raise ConfigError(f"BIKESTATE.DATA.TRAIN_DROP_STATES: unknown state(s) "
                              f"{', '.join(map(repr, unknown))}; states are "
                              f"{', '.join(STATE_NAMES)}")
        ret["drop_states"] = [STATE_NAMES.index(s) for s in cfg.BIKESTATE.DATA.TRAIN_DROP_STATES]
        return ret

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict (dict): one image of a registered bike dataset (not modified).

        Returns:
            dict: see the class docstring.
        """
        dataset_dict = copy.deepcopy(dataset_dict)  # the code below modifies it
        image = self._read_image(dataset_dict)

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]  # h, w
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict

        annos = [
            obj for obj in dataset_dict.pop("annotations", [])
            if obj.get("iscrowd", 0) == 0
            and not (self.drop_states and self._state_of(obj, dataset_dict) in self.drop_states)
        ]
        if self.use_instance_mask or self.use_keypoint:
            # detectron2's per-annotation path, which also transforms masks and keypoints.
            annos = [utils.transform_instance_annotations(
                obj, transforms, image_shape, keypoint_hflip_indices=self.keypoint_hflip_indices)
                for obj in annos]
            instances = utils.annotations_to_instances(annos, image_shape,
                                                       mask_format=self.instance_mask_format)
        else:
            instances = Instances(image_shape)
            instances.gt_boxes = Boxes(transform_boxes(annos, transforms, image_shape))
            instances.gt_classes = torch.tensor([int(obj["category_id"]) for obj in annos],
                                                dtype=torch.int64)
        # The states in the same order, so that row i of every field describes the same part.
        instances.gt_states = torch.tensor(
            [self._state_of(obj, dataset_dict) for obj in annos], dtype=torch.int64
        )
        # Drops boxes emptied by the crop/clip from all fields at once (one boolean mask).
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict

    def _read_image(self, dataset_dict):
        file_name = dataset_dict["file_name"]
        # The reader of inference too: EXIF orientation applied (the conversion wrote sizes and
        # boxes for this upright view), any colour mode to 3 channels, transparency on white;
        # UnreadableImageError (with file_name) for a missing, truncated or corrupt file.
        image = read_image(file_name, format=self.image_format)
        try:
            utils.check_image_size(dataset_dict, image)
        except utils.SizeMismatchError:
            raise ImageSizeMismatchError(
                f"image {file_name} is {image.shape[1]}x{image.shape[0]} but its annotation says "
                f"{dataset_dict.get('width')}x{dataset_dict.get('height')}",
                file_name,
            ) from None
        return image

    @staticmethod
    def _state_of(annotation, dataset_dict):
        try:
            return int(annotation["state"])
        except KeyError:
            raise DataError(
                f"image {dataset_dict['file_name']}: an annotation (category "
                f"{annotation.get('category_id')}) has no 'state'; register the data with "
                "register_bike_instances (it keeps the state keys)"
            ) from None


def transform_boxes(annotations, transforms, image_shape):
    """The annotations' boxes in the augmented image, clipped to it: what detectron2's
    ``transform_instance_annotations`` and ``annotations_to_instances`` make of each box, bit
    for bit, for all boxes at once (a fifth of the mapper's time went to the per-box calls).
    Except that a box of four Python ints is scaled in floating point: detectron2 scales it in
    integer arithmetic, dropping the fractions.

    Args:
        annotations (list[dict]): N annotations with ``bbox`` and ``bbox_mode``.
        transforms (TransformList): the transforms the image went through.
        image_shape (tuple): (height, width) of the augmented image.
    Returns:
        ndarray: (N, 4) float64 XYXY_ABS boxes.
    """
    if not annotations:
        return np.zeros((0, 4))
    # BoxMode.convert of one box computes in float32 (torch's default dtype): so does this.
    boxes = np.asarray([obj["bbox"] for obj in annotations], dtype=np.float32)
    modes = np.asarray([int(obj["bbox_mode"]) for obj in annotations])
    for mode in np.unique(modes):
        rows = modes == mode
        boxes[rows] = BoxMode.convert(boxes[rows], BoxMode(int(mode)), BoxMode.XYXY_ABS)
    boxes = transforms.apply_box(boxes.astype(np.float64)).clip(min=0)
    height, width = image_shape
    return np.minimum(boxes, [width, height, width, height])


# Key added to a mapped dataset dict: the images the mapper skipped before producing it.
SKIPPED_KEY = "_bikestate_skipped_images"


class SkipUnreadableImages:
    """Wrap a dataset mapper so a corrupt or vanished image is skipped instead of ending training.

    The mapper returns None for such an image (detectron2's ``MapDataset`` then takes another
    one) after one warning naming the file; the names of skipped images ride along with the
    next dict this (worker) process produces, under ``_bikestate_skipped_images``, so the training
    loop can count them in the main process.
    """

    def __init__(self, mapper):
        self.mapper = mapper
        self._pending = []

    def __call__(self, dataset_dict):
        try:
            out = self.mapper(dataset_dict)
        except (UnreadableImageError, OSError) as e:
            name = dataset_dict.get("file_name", "?")
            logger.warning("Skipping unreadable training image %s: %s", name, e)
            self._pending.append(str(name))
            return None
        if out is not None and self._pending:
            out[SKIPPED_KEY] = self._pending
            self._pending = []
        return out


def build_annotated_test_loader(cfg, dataset, skip_unreadable=False):
    """Images with their annotations, mapped like training images but without random
    augmentation (the test-time resize only), one per batch, sharded over the processes
    (``InferenceSampler``): what the validation loss and the state-head refinement read.

    Args:
        dataset: list of bike dataset dicts.
        skip_unreadable: skip unreadable images (:class:`SkipUnreadableImages`) instead of
            stopping.
    """
    from detectron2.data import build_detection_test_loader
    from detectron2.data.samplers import InferenceSampler

    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    mapper = BikeStateDatasetMapper(cfg, is_train=True, augmentations=[resize])
    if skip_unreadable:
        mapper = SkipUnreadableImages(mapper)
    return build_detection_test_loader(dataset=dataset, mapper=mapper,
                                       sampler=InferenceSampler(len(dataset)),
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)
