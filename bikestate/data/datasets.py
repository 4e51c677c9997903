"""Dataset registrar: where the bike data comes from, and its registration with detectron2.

Three kinds of input end up as a registered COCO-with-states dataset
(docs/data_formats.md):

* a COCO JSON with ``state`` on every annotation: registered as it is;
* a DelftBikes-format JSON (an object keyed by image file name): converted once with
  :func:`bikestate.data.coco.convert_to_coco` to ``OUTPUT_DIR/<split>_coco.json``,
  reconverted only when the input changed;
* nothing at all: the embedded default, SynthBikes, generated on first use into
  ``BIKESTATE.DATA.SYNTH_CACHE_DIR`` and reused afterwards.

How each split is prepared lives in :mod:`.cache`, the catalog entries in :mod:`.catalog`;
where the paths come from (config file, environment, ``.env``, command line) in
:func:`bikestate.config.get_user_config`.

The datasets are registered as ``bike_train``, ``bike_val`` and, when there is test data,
``bike_test``. Their metadata carries ``thing_classes`` (from the file's categories),
``state_classes``, ``json_file``, ``image_root`` and ``evaluator_type="bikestate"``.
"""
import logging

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from ..utils.errors import ConfigError
from .cache import FileSource, SynthSource
from .catalog import register_bike_instances, unregister_bike_dataset

logger = logging.getLogger(__name__)

__all__ = ["register_bike_datasets", "register_dataset_to_evaluate"]

# split -> (config key of the annotations, config key of the images, env of each or None).
_SPLITS = {
    "train": ("TRAIN_JSON", "TRAIN_IMAGES", "TRAIN_JSON", "TRAIN_CLEANED"),
    "val": ("VAL_JSON", "VAL_IMAGES", "VAL_JSON", "VAL_CLEANED"),
    "test": ("TEST_JSON", "TEST_IMAGES", None, None),
}
_SYNTH_NUM_KEYS = {"train": "SYNTH_NUM_TRAIN", "val": "SYNTH_NUM_VAL", "test": "SYNTH_NUM_TEST"}


def register_bike_datasets(cfg, *, replace=False):
    """Register ``bike_train``, ``bike_val`` (and ``bike_test``) from ``cfg.BIKESTATE.DATA``.

    Where the data comes from, per split:

    * ``<SPLIT>_JSON`` set: a COCO-with-states file is used directly; a DelftBikes-format file
      is converted to ``OUTPUT_DIR/<split>_coco.json`` (reconverted only when the input JSON,
      images folder or ``ON_INVALID`` changed; a sidecar ``<split>_coco.source.json`` records
      them). ``<SPLIT>_IMAGES`` must then name the images folder.
    * ``TRAIN_JSON`` and ``VAL_JSON`` both empty: the embedded SynthBikes default, generated on
      first use into ``SYNTH_CACHE_DIR`` (one folder per split, size, seed and image size) and
      reused; ``bike_test`` too when ``SYNTH_NUM_TEST > 0`` and ``TEST_JSON`` is empty.
    * Only one of ``TRAIN_JSON`` / ``VAL_JSON`` set: a :class:`ConfigError` (mixing real
      training data with synthetic validation data is never what a user means).

    ``replace=True`` replaces earlier registrations of these names with other arguments
    (see :func:`register_bike_instances`); by default that is a :class:`ConfigError`.

    In a distributed run, the main process generates or converts and the others wait for it
    (a shared file system is assumed, as for ``OUTPUT_DIR``).

    Returns:
        dict[str, dict]: ``{dataset name: {"json_file": str, "image_root": str}}``.
    """
    sources = _resolve_sources(cfg)
    # Cheap checks run on every rank first, so a bad path fails everywhere instead of leaving
    # the other ranks waiting at the barrier.
    for src in sources.values():
        src.check()
    if comm.is_main_process():
        categories = None
        for src in sources.values():  # train first: val and test reuse its category ids
            src.prepare(categories)
            categories = categories or src.categories()
    if comm.get_world_size() > 1:
        comm.synchronize()

    registered = {}
    if replace:  # a test split of an earlier source must not survive into this one
        for split in set(_SPLITS) - set(sources):
            unregister_bike_dataset(f"bike_{split}")
    for split, src in sources.items():
        name = f"bike_{split}"
        json_file, image_root = src.outputs()
        register_bike_instances(name, json_file, image_root, replace=replace)
        registered[name] = {"json_file": json_file, "image_root": image_root}
    # One model is trained and evaluated on all of them: class ids must mean the same part.
    classes = {name: MetadataCatalog.get(name).thing_classes for name in registered}
    if len({tuple(c) for c in classes.values()}) > 1:
        raise ConfigError("the datasets have different part categories (class ids would not "
                          "match between them)",
                          details=[f"{name}: {c}" for name, c in classes.items()])
    return registered


def register_dataset_to_evaluate(cfg, dataset=None):
    """Register the bike datasets of ``cfg`` and name the one a tool evaluates on.

    Args:
        cfg (CfgNode): the tool's config (data sources as for training).
        dataset (str or None): the user's choice; None: ``DATASETS.TEST[0]`` (``bike_val``
            when the config has no test dataset).
    Returns:
        str: a registered dataset name.
    Raises:
        ConfigError: the dataset is not registered (the line lists the bike datasets).
    """
    registered = register_bike_datasets(cfg)
    name = dataset or (cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "bike_val")
    if name not in DatasetCatalog.list():
        raise ConfigError(f"dataset {name!r} is not registered (the bike datasets are "
                          f"{', '.join(sorted(registered))})")
    return name


def _resolve_sources(cfg):
    data = cfg.BIKESTATE.DATA
    given = {split: bool(getattr(data, keys[0])) for split, keys in _SPLITS.items()}
    if given["train"] != given["val"]:
        have, missing = ("train", "val") if given["train"] else ("val", "train")
        raise ConfigError(
            f"BIKESTATE.DATA.{_SPLITS[have][0]} is set but BIKESTATE.DATA.{_SPLITS[missing][0]} "
            f"(env {_SPLITS[missing][2]}) is empty: give both, or neither to use SynthBikes"
        )
    synth_mode = not given["train"]
    sources = {}
    for split, (json_key, images_key, json_env, images_env) in _SPLITS.items():
        if given[split]:
            sources[split] = FileSource(
                split,
                json_file=getattr(data, json_key),
                images_dir=getattr(data, images_key),
                json_what=_key_name(json_key, json_env),
                images_what=_key_name(images_key, images_env),
                output_dir=cfg.OUTPUT_DIR,
                on_invalid=data.ON_INVALID,
            )
        elif synth_mode:
            num = int(getattr(data, _SYNTH_NUM_KEYS[split]))
            if num <= 0:
                if split == "test":
                    continue
                raise ConfigError(f"BIKESTATE.DATA.{_SYNTH_NUM_KEYS[split]} must be > 0, got {num}")
            seeds = list(data.SYNTH_SEEDS)
            index = list(_SPLITS).index(split)
            if len(seeds) <= index:
                raise ConfigError(
                    f"BIKESTATE.DATA.SYNTH_SEEDS needs one seed per split (train, val, test), "
                    f"got {seeds}"
                )
            sources[split] = SynthSource(
                split,
                cache_dir=data.SYNTH_CACHE_DIR,
                num_images=num,
                seed=int(seeds[index]),
                image_size=tuple(int(v) for v in data.SYNTH_IMAGE_SIZE),
                style=data.SYNTH_STYLE,
                # Only training may see other shares: scores stay on DelftBikes' shares.
                state_probs=(list(data.SYNTH_TRAIN_STATE_PROBS) or None) if split == "train"
                else None,
            )
    if data.ON_INVALID not in ("error", "skip"):
        raise ConfigError(f"BIKESTATE.DATA.ON_INVALID must be 'error' or 'skip', "
                          f"got {data.ON_INVALID!r}")
    return sources


def _key_name(key, env):
    return f"BIKESTATE.DATA.{key}" + (f" (env {env})" if env else "")
