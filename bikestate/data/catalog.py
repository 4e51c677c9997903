"""detectron2's catalogs for COCO-with-states files: registration and loading.

:func:`register_bike_instances` is bikestate's ``register_coco_instances``: the dataset dicts keep
each annotation's ``state`` (and ``state_name``, ``trust``), and the metadata carries
``thing_classes``, ``state_classes``, ``json_file``, ``image_root`` and
``evaluator_type="bikestate"``. The file format is described in docs/data_formats.md.
"""
import functools
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..utils.errors import ConfigError
from .formats import summarize_coco

logger = logging.getLogger(__name__)

__all__ = ["EXTRA_ANNOTATION_KEYS", "register_bike_instances", "unregister_bike_dataset",
           "load_bike_json"]

# Per-annotation keys of COCO-with-states that load_coco_json must keep (it drops unknown keys).
EXTRA_ANNOTATION_KEYS = ("state", "state_name", "trust")


def register_bike_instances(name, json_file, image_root, metadata=None, *, replace=False):
    """Register a COCO-with-states file as the detectron2 dataset ``name``.

    The dataset dicts come from ``load_coco_json(..., extra_annotation_keys=["state",
    "state_name", "trust"])``, so every annotation dict keeps its ``state``; images without
    annotations are kept with an empty ``annotations`` list. The file is read once here (plain
    ``json``, cheap) to fill the metadata and check that every annotation has a valid state.

    Args:
        name (str): dataset name, e.g. ``"bike_train"``.
        json_file (str): COCO JSON with ``state`` on every annotation.
        image_root (str): folder that the images' ``file_name`` are relative to.
        metadata (dict or None): extra metadata; it may override ``state_classes`` but
            ``thing_classes`` must agree with the file's categories.
        replace (bool): replace an existing registration of ``name`` whatever its arguments
            (for notebooks and tests that register several data sources in one process).

    Registering the same name again with the same arguments is a no-op (the metadata is
    refreshed if the file's categories changed); with different arguments it raises
    :class:`ConfigError`, because detectron2's catalogs are global and a silent replacement
    would train on the wrong data.
    """
    json_file = os.path.abspath(os.path.expanduser(os.fspath(json_file)))
    image_root = os.path.abspath(os.path.expanduser(os.fspath(image_root)))
    extra = dict(metadata or {})
    summary = summarize_coco(json_file)
    if "thing_classes" in extra and list(extra["thing_classes"]) != summary["thing_classes"]:
        raise ConfigError(
            f"metadata thing_classes given for dataset '{name}' differ from the categories of "
            f"{json_file}",
            details=[f"given: {list(extra['thing_classes'])}",
                     f"file:  {summary['thing_classes']}"],
        )
    values = {
        "thing_classes": summary["thing_classes"],
        "thing_dataset_id_to_contiguous_id": summary["thing_dataset_id_to_contiguous_id"],
        "state_classes": summary["state_classes"],
        "json_file": json_file,
        "image_root": image_root,
        "evaluator_type": "bikestate",
    }
    values.update(extra)
    if "thing_classes" in extra:
        values["thing_classes"] = list(extra["thing_classes"])

    if replace:
        unregister_bike_dataset(name)
    if name in DatasetCatalog.list():
        old = MetadataCatalog.get(name)
        old_args = (old.get("json_file"), old.get("image_root"),
                    old.get("bikestate_extra_metadata"))
        if old_args != (json_file, image_root, _freeze(extra)):
            raise ConfigError(
                f"dataset '{name}' is already registered with other arguments",
                details=[f"registered: json_file={old.get('json_file')} "
                         f"image_root={old.get('image_root')}",
                         f"requested:  json_file={json_file} image_root={image_root}",
                         "use another name, or unregister_bike_dataset() it first"],
            )
        if all(old.get(k) == v for k, v in values.items()):
            return
        # Same file, new content (e.g. reconverted with other parts): refresh the metadata.
        logger.info(f"Dataset '{name}': {json_file} changed since registration; re-registering")
        unregister_bike_dataset(name)

    elif name in MetadataCatalog.list():
        # Metadata left without a dataset (e.g. set up front by a user): keep what agrees,
        # but a value that contradicts the file would make detectron2's Metadata assert.
        old = MetadataCatalog.get(name)
        if any(old.get(k, v) != v for k, v in values.items()):
            logger.warning(f"Dataset '{name}': replacing stale metadata {old.as_dict()}")
            MetadataCatalog.remove(name)

    DatasetCatalog.register(name, functools.partial(load_bike_json, json_file, image_root, name))
    MetadataCatalog.get(name).set(bikestate_extra_metadata=_freeze(extra), **values)
    logger.info(
        f"Registered dataset '{name}': {summary['num_images']} images, "
        f"{summary['num_annotations']} boxes from {json_file}"
    )


def unregister_bike_dataset(name):
    """Remove ``name`` from detectron2's DatasetCatalog and MetadataCatalog (if present)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


def load_bike_json(json_file, image_root, dataset_name=None):
    """Load a COCO-with-states file into detectron2 dataset dicts.

    Returns:
        list[dict]: one dict per image (``file_name``, ``height``, ``width``, ``image_id``,
        ``annotations``); each annotation has ``bbox`` (XYWH_ABS), ``category_id`` (contiguous
        0..K-1 when ``dataset_name`` is given), ``iscrowd`` and ``state`` (int), plus
        ``state_name`` / ``trust`` when the file has them.
    """
    return load_coco_json(
        json_file, image_root, dataset_name, extra_annotation_keys=list(EXTRA_ANNOTATION_KEYS)
    )


def _freeze(obj):
    """A hashable, comparable form of a metadata dict (for the "same arguments" check)."""
    if isinstance(obj, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    return obj
