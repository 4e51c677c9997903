"""Dataset registrar: where the bike data comes from, and its registration with detectron2.

Three kinds of input end up as a registered COCO-with-states dataset (DESIGN.md section 2):

* a COCO JSON with ``state`` on every annotation: registered as it is;
* a DelftBikes-format JSON (an object keyed by image file name): converted once with
  :func:`bikestate.data.coco.convert_to_coco` to ``OUTPUT_DIR/<split>_coco.json`` (the seed's
  names), reconverted only when the input changed;
* nothing at all: the embedded default, SynthBikes, generated on first use into
  ``BIKESTATE.DATA.SYNTH_CACHE_DIR`` and reused afterwards.

The datasets are registered as ``bike_train``, ``bike_val`` and, when there is test data,
``bike_test``. Their metadata carries ``thing_classes`` (from the file's categories),
``state_classes``, ``json_file``, ``image_root`` and ``evaluator_type="bikestate"``.
"""
import contextlib
import functools
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils import comm

from ..constants import STATE_NAMES
from ..utils.errors import ConfigError, DataError
from ..utils.io import atomic_write_json, read_json

logger = logging.getLogger(__name__)

__all__ = [
    "EXTRA_ANNOTATION_KEYS",
    "DATA_ENV_VARS",
    "register_bike_instances",
    "unregister_bike_dataset",
    "load_bike_json",
    "apply_data_environment",
    "register_bike_datasets",
    "register_dataset_to_evaluate",
    "detect_annotation_format",
]

# Per-annotation keys of COCO-with-states that load_coco_json must keep (it drops unknown keys).
EXTRA_ANNOTATION_KEYS = ("state", "state_name", "trust")

# The seed's environment variables (also read from a .env file) -> the config key each sets.
DATA_ENV_VARS = {
    "TRAIN_JSON": "BIKESTATE.DATA.TRAIN_JSON",
    "VAL_JSON": "BIKESTATE.DATA.VAL_JSON",
    "TRAIN_CLEANED": "BIKESTATE.DATA.TRAIN_IMAGES",
    "VAL_CLEANED": "BIKESTATE.DATA.VAL_IMAGES",
    "OUTPUT_DIR": "OUTPUT_DIR",
}

# split -> (config key of the annotations, config key of the images, env of each or None).
_SPLITS = {
    "train": ("TRAIN_JSON", "TRAIN_IMAGES", "TRAIN_JSON", "TRAIN_CLEANED"),
    "val": ("VAL_JSON", "VAL_IMAGES", "VAL_JSON", "VAL_CLEANED"),
    "test": ("TEST_JSON", "TEST_IMAGES", None, None),
}
_SYNTH_NUM_KEYS = {"train": "SYNTH_NUM_TRAIN", "val": "SYNTH_NUM_VAL", "test": "SYNTH_NUM_TEST"}

# Name of the COCO file inside a SynthBikes cache folder (annotations.json is the DelftBikes one).
_SYNTH_COCO_NAME = "coco.json"
# Temporary generation folders older than this are leftovers of a killed run and are removed.
_STALE_TMP_SECONDS = 6 * 3600


# ------------------------------------------------------------------------------ registration


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
    summary = _summarize_coco(json_file)
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


def detect_annotation_format(obj):
    """``"coco"`` for a COCO object (a list under ``"images"``), else ``"delftbikes"``.

    A DelftBikes file is an object keyed by image file name whose values are objects, so a
    list-valued ``"images"`` key cannot be one of its entries.
    """
    if isinstance(obj, dict) and isinstance(obj.get("images"), list):
        return "coco"
    return "delftbikes"


def _summarize_coco(json_file, obj=None):
    """Check a COCO-with-states file and return what its metadata needs.

    Returns:
        dict with ``thing_classes`` (names sorted by category id, as load_coco_json orders
        them), ``thing_dataset_id_to_contiguous_id``, ``state_classes``, ``num_images``,
        ``num_annotations``.
    """
    if obj is None:
        obj = read_json(json_file)
    if detect_annotation_format(obj) != "coco":
        raise DataError(
            f"{json_file} is not a COCO file (no 'images' list); DelftBikes-format files are "
            "converted by register_bike_datasets or tools/convert_to_coco.py"
        )
    categories = obj.get("categories") or []
    if not categories:
        raise DataError(f"{json_file}: COCO file has no categories")
    categories = sorted(categories, key=lambda c: c["id"])
    cat_ids = [c["id"] for c in categories]
    if len(set(cat_ids)) != len(cat_ids):
        raise DataError(f"{json_file}: duplicate category ids {cat_ids}")

    state_classes = list(STATE_NAMES)
    if obj.get("state_categories"):
        state_cats = sorted(obj["state_categories"], key=lambda c: c["id"])
        if [c["id"] for c in state_cats] != list(range(len(state_cats))):
            raise DataError(f"{json_file}: state_categories ids must be 0..K-1, got "
                            f"{[c['id'] for c in state_cats]}")
        state_classes = [c["name"] for c in state_cats]

    # Every annotation needs a state the model can train on; report all problems at once.
    image_names = {img.get("id"): img.get("file_name", "?") for img in obj["images"]}
    cat_names = {c["id"]: c["name"] for c in categories}
    problems = []
    annotations = obj.get("annotations") or []
    for ann in annotations:
        state = ann.get("state")
        if not isinstance(state, int) or isinstance(state, bool) or not (
            0 <= state < len(state_classes)
        ):
            where = (f"image {image_names.get(ann.get('image_id'), ann.get('image_id'))}, "
                     f"part {cat_names.get(ann.get('category_id'), ann.get('category_id'))}")
            what = ("no 'state'" if state is None
                    else f"state {state!r} not in 0..{len(state_classes) - 1}")
            problems.append(f"{where}: {what}")
    if problems:
        raise DataError(
            f"{json_file}: {len(problems)} annotation(s) without a valid state "
            "(is this a COCO-with-states file from convert_to_coco?)",
            details=problems[:20]
            + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []),
        )
    return {
        "thing_classes": [c["name"] for c in categories],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(cat_ids)},
        "state_classes": state_classes,
        "num_images": len(obj["images"]),
        "num_annotations": len(annotations),
    }


# ------------------------------------------------------------------------------ environment


def apply_data_environment(cfg, environ=None, dotenv_path=".env"):
    """Set the data paths of ``cfg`` from the seed's environment variables and ``.env`` file.

    ``TRAIN_JSON``, ``VAL_JSON``, ``TRAIN_CLEANED``, ``VAL_CLEANED`` and ``OUTPUT_DIR`` set
    ``BIKESTATE.DATA.TRAIN_JSON``, ``VAL_JSON``, ``TRAIN_IMAGES``, ``VAL_IMAGES`` and
    ``OUTPUT_DIR``. Real environment variables win over the ``.env`` file (python-dotenv's
    ``override=False`` rule); empty values count as unset.

    The precedence users get is: command-line config options > environment / ``.env`` >
    config file keys > embedded default (SynthBikes). A tool therefore does::

        cfg = get_cfg(); add_bikestate_config(cfg)
        cfg.merge_from_file(args.config_file)   # config file keys
        apply_data_environment(cfg)             # env / .env override the file
        cfg.merge_from_list(args.opts)          # command line overrides everything

    Args:
        cfg (CfgNode): a config with the bikestate keys; modified in place (even if frozen;
            its frozen state is restored).
        environ (Mapping or None): the environment; ``None`` means ``os.environ``.
        dotenv_path (str or None): ``.env`` file read when it exists; ``None`` skips it.

    Returns:
        dict: ``{config key: (variable name, value)}`` of what was applied (for logging).
    """
    environ = os.environ if environ is None else environ
    values = {}
    if dotenv_path and os.path.isfile(dotenv_path):
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v})
    values.update({k: environ[k] for k in DATA_ENV_VARS if environ.get(k)})

    applied = {}
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    try:
        for var, key in DATA_ENV_VARS.items():
            if not values.get(var):
                continue
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = getattr(node, p)
            setattr(node, leaf, values[var])
            applied[key] = (var, values[var])
    finally:
        if was_frozen:
            cfg.freeze()
    for key, (var, value) in applied.items():
        logger.info(f"{key} = {value} (from {var})")
    return applied


# ------------------------------------------------------------------------------ data sources


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
            sources[split] = _FileSource(
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
            sources[split] = _SynthSource(
                split,
                cache_dir=data.SYNTH_CACHE_DIR,
                num_images=num,
                seed=int(seeds[index]),
                image_size=tuple(int(v) for v in data.SYNTH_IMAGE_SIZE),
            )
    if data.ON_INVALID not in ("error", "skip"):
        raise ConfigError(f"BIKESTATE.DATA.ON_INVALID must be 'error' or 'skip', "
                          f"got {data.ON_INVALID!r}")
    return sources


def _key_name(key, env):
    return f"BIKESTATE.DATA.{key}" + (f" (env {env})" if env else "")


class _FileSource:
    """A user's annotation file: COCO used directly, DelftBikes converted into OUTPUT_DIR."""

    def __init__(self, split, *, json_file, images_dir, json_what, images_what, output_dir,
                 on_invalid):
        self.split = split
        self.json_file = os.path.abspath(os.path.expanduser(json_file))
        self.images_dir = os.path.abspath(os.path.expanduser(images_dir)) if images_dir else ""
        self.json_what, self.images_what = json_what, images_what
        self.output_dir = os.path.abspath(os.path.expanduser(output_dir))
        self.on_invalid = on_invalid
        self._format = None

    @property
    def converted_path(self):
        return os.path.join(self.output_dir, f"{self.split}_coco.json")

    @property
    def sidecar_path(self):
        return os.path.join(self.output_dir, f"{self.split}_coco.source.json")

    def check(self):
        if not os.path.isfile(self.json_file):
            raise ConfigError(f"annotation file not found: {self.json_file} "
                              f"(set by {self.json_what})")
        if not self.images_dir:
            raise ConfigError(f"{self.images_what} is empty: set the folder of the images of "
                              f"{self.json_file}")
        if not os.path.isdir(self.images_dir):
            raise ConfigError(f"images folder not found: {self.images_dir} "
                              f"(set by {self.images_what})")

    def _detect(self):
        if self._format is None:
            self._format = detect_annotation_format(read_json(self.json_file))
        return self._format

    def categories(self):
        return [c["name"] for c in sorted(read_json(self.outputs()[0]).get("categories", []),
                                          key=lambda c: c["id"])]

    def prepare(self, categories=None):
        """Convert if needed; ``categories`` (names in id order) fixes the category ids."""
        if self._detect() == "coco":
            logger.info(f"{self.split}: COCO-with-states {self.json_file}")
            return
        record = self._source_record(hash_input=False, categories=categories)
        if self._up_to_date(record):
            logger.info(f"{self.split}: {self.converted_path} is up to date with {self.json_file}")
            return
        from .coco import convert_to_coco

        logger.info(f"{self.split}: converting {self.json_file} -> {self.converted_path}")
        # convert_to_coco creates OUTPUT_DIR itself, only once the input proved valid.
        convert_to_coco(self.json_file, self.images_dir, self.converted_path,
                        on_invalid=self.on_invalid, categories=categories)
        record = self._source_record(hash_input=True, categories=categories)
        stat = os.stat(self.converted_path)
        record.update(output_size=stat.st_size, output_mtime_ns=stat.st_mtime_ns)
        atomic_write_json(record, self.sidecar_path, indent=2)

    def outputs(self):
        if self._detect() == "coco":
            return self.json_file, self.images_dir
        return self.converted_path, self.images_dir

    def _source_record(self, hash_input, categories):
        stat = os.stat(self.json_file)
        record = {
            "input_json": self.json_file,
            "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "images_dir": self.images_dir,
            "on_invalid": self.on_invalid,
            "categories": list(categories) if categories else None,
        }
        if hash_input:
            record["input_sha256"] = _sha256(self.json_file)
        return record

    def _up_to_date(self, record):
        """True when the last conversion used this very input (same content, folder, mode)."""
        try:
            with open(self.sidecar_path, "r", encoding="utf-8") as f:
                old = json.load(f)
            out = os.stat(self.converted_path)
        except (OSError, ValueError):
            return False
        if (old.get("output_size"), old.get("output_mtime_ns")) != (out.st_size, out.st_mtime_ns):
            return False  # the output was replaced or edited by someone else
        for key in ("input_json", "images_dir", "on_invalid", "categories"):
            if old.get(key) != record[key]:
                return False
        if (old.get("input_size"), old.get("input_mtime_ns")) == (
            record["input_size"], record["input_mtime_ns"]
        ):
            return True
        # Touched or copied again: only a content change needs a reconversion.
        if old.get("input_size") != record["input_size"] or \
                old.get("input_sha256") != _sha256(self.json_file):
            return False
        old.update(input_mtime_ns=record["input_mtime_ns"])
        atomic_write_json(old, self.sidecar_path, indent=2)
        return True


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _SynthSource:
    """The embedded default: a SynthBikes split generated once into the cache and reused."""

    def __init__(self, split, *, cache_dir, num_images, seed, image_size):
        self.split = split
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
        self.num_images, self.seed, self.image_size = num_images, seed, image_size
        from .. import synth

        # A new generator version must not reuse images drawn by an older one.
        version = getattr(synth, "SYNTH_VERSION", None)
        w, h = image_size
        self.name = f"{split}_n{num_images}_seed{seed}_{w}x{h}" + (
            f"_v{version}" if version is not None else ""
        )
        self.folder = os.path.join(self.cache_dir, self.name)

    def check(self):
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ConfigError(f"BIKESTATE.DATA.SYNTH_IMAGE_SIZE must be [width, height], "
                              f"got {list(self.image_size)}")

    def outputs(self):
        return os.path.join(self.folder, _SYNTH_COCO_NAME), os.path.join(self.folder, "images")

    def categories(self):
        return [c["name"] for c in sorted(read_json(self.outputs()[0]).get("categories", []),
                                          key=lambda c: c["id"])]

    def prepare(self, categories=None):
        coco_file, _ = self.outputs()
        if os.path.isfile(coco_file):
            logger.info(f"{self.split}: SynthBikes from cache {self.folder}")
            return
        from .coco import convert_to_coco
        from ..synth import generate_synthbikes

        os.makedirs(self.cache_dir, exist_ok=True)
        self._remove_stale_tmp()
        logger.info(f"{self.split}: generating {self.num_images} SynthBikes images "
                    f"(seed {self.seed}) into {self.folder}")
        # Everything is built in a temporary sibling folder that is renamed at the end, so a
        # run killed midway leaves no folder that looks complete; the next run starts over.
        tmp = tempfile.mkdtemp(dir=self.cache_dir, prefix=f".{self.name}.tmp-")
        try:
            ann = generate_synthbikes(tmp, self.num_images, self.seed,
                                      image_size=self.image_size, show_progress=True)
            # SynthBikes draws every DelftBikes part, so its categories are always PART_NAMES.
            convert_to_coco(ann, os.path.join(tmp, "images"), os.path.join(tmp, _SYNTH_COCO_NAME))
            try:
                os.rename(tmp, self.folder)
            except OSError:
                if not os.path.isfile(coco_file):  # not a concurrent run that finished first
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove_stale_tmp(self):
        for path in glob.glob(os.path.join(self.cache_dir, f".{self.name}.tmp-*")):
            with contextlib.suppress(OSError):
                if time.time() - os.path.getmtime(path) > _STALE_TMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
