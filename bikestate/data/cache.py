"""Prepared data sources: where a split's COCO-with-states file and images come from.

* :class:`FileSource`: a user's annotation file. A COCO file is used as it is; a DelftBikes file
  is converted once to ``OUTPUT_DIR/<split>_coco.json`` and reconverted only when its content,
  images folder, the images it names (added, removed, replaced), ``ON_INVALID`` or the
  conversion itself (:data:`CONVERSION_VERSION`) changed (a sidecar
  ``<split>_coco.source.json`` records the input's size, mtime and sha256 and a digest of the
  images' sizes and mtimes).
* :class:`SynthSource` / :func:`prepare_synthbikes`: a SynthBikes split generated once into a
  cache folder (named by split, size, seed, image size and generator version) and reused. The
  folder is built under a temporary name and renamed when complete, so a killed run never
  leaves a folder that looks complete.

Both have ``check()`` (cheap, every rank), ``prepare(categories)`` (main process) and
``outputs()`` -> ``(coco_json, image_root)``.
"""
import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time

from ..utils.errors import ConfigError, DataError
from ..utils.io import atomic_write_json, file_sha256, read_json
from .formats import detect_annotation_format

logger = logging.getLogger(__name__)

__all__ = ["FileSource", "SynthSource", "prepare_synthbikes"]

# Name of the COCO file inside a SynthBikes cache folder (annotations.json is the DelftBikes one).
SYNTH_COCO_NAME = "coco.json"
# Version of the DelftBikes -> COCO conversion, recorded in the sidecar: a conversion by another
# version is redone (2: size and boxes in the upright view of images with an EXIF orientation).
CONVERSION_VERSION = 2
# Temporary generation folders older than this are leftovers of a killed run and are removed.
_STALE_TMP_SECONDS = 6 * 3600


class FileSource:
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
        # The images as checked before the conversion: the digest is not taken twice.
        record = self._source_record(hash_input=True, categories=categories,
                                     images_digest=record["images_digest"])
        stat = os.stat(self.converted_path)
        record.update(output_size=stat.st_size, output_mtime_ns=stat.st_mtime_ns)
        atomic_write_json(record, self.sidecar_path, indent=2)

    def outputs(self):
        if self._detect() == "coco":
            return self.json_file, self.images_dir
        return self.converted_path, self.images_dir

    def _source_record(self, hash_input, categories, images_digest=None):
        stat = os.stat(self.json_file)
        record = {
            "input_json": self.json_file,
            "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "images_dir": self.images_dir,
            "on_invalid": self.on_invalid,
            "categories": list(categories) if categories else None,
            "conversion_version": CONVERSION_VERSION,
            "images_digest": (self._images_digest() if images_digest is None
                              else images_digest),
        }
        if hash_input:
            record["input_sha256"] = file_sha256(self.json_file)
        return record

    def _images_digest(self):
        """sha256 of the name, size and mtime (or absence) of every image the annotation file
        names: the conversion checked them (existence, size, EXIF orientation), so an image
        added, removed or replaced since needs a reconversion. Stat calls only (~10 ms per
        1,000 images); "" when the annotation file cannot be read (the conversion says why)."""
        from .delftbikes import read_annotation_json

        try:
            names = sorted(read_annotation_json(self.json_file))
        except DataError:
            return ""
        digest = hashlib.sha256()
        for name in names:
            try:
                stat = os.stat(os.path.join(self.images_dir, name))
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{name}\0missing\n".encode())
        return digest.hexdigest()

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
        for key in ("input_json", "images_dir", "on_invalid", "categories", "conversion_version",
                    "images_digest"):
            if old.get(key) != record[key]:
                return False
        if (old.get("input_size"), old.get("input_mtime_ns")) == (
            record["input_size"], record["input_mtime_ns"]
        ):
            return True
        # Touched or copied again: only a content change needs a reconversion.
        if old.get("input_size") != record["input_size"] or \
                old.get("input_sha256") != file_sha256(self.json_file):
            return False
        old.update(input_mtime_ns=record["input_mtime_ns"])
        atomic_write_json(old, self.sidecar_path, indent=2)
        return True


class SynthSource:
    """The embedded default: a SynthBikes split generated once into the cache and reused."""

    def __init__(self, split, *, cache_dir, num_images, seed, image_size, style="v1",
                 state_probs=None):
        self.split = split
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
        self.num_images, self.seed, self.image_size = num_images, seed, image_size
        self.style = style
        from .. import synth

        # None: the generator's DelftBikes shares. Checked here: the folder name holds them.
        if state_probs is not None:
            try:
                state_probs = synth.check_state_probs(state_probs)
            except ConfigError as e:
                raise ConfigError(f"BIKESTATE.DATA.SYNTH_TRAIN_STATE_PROBS: {e}") from None
        self.state_probs = state_probs

        # A new generator version must not reuse images drawn by an older one, nor a split
        # drawn with other state shares.
        version = synth.SYNTH_VERSIONS.get(style)
        w, h = image_size
        self.name = f"{split}_n{num_images}_seed{seed}_{w}x{h}" + (
            f"_v{version}" if version is not None else ""
        ) + ("" if style == "v1" else f"_{style}") + (
            "" if self.state_probs is None else "_" + synth.state_probs_label(self.state_probs))
        self.folder = os.path.join(self.cache_dir, self.name)

    def check(self):
        from ..synth import SYNTH_STYLES

        if self.style not in SYNTH_STYLES:
            raise ConfigError(f"BIKESTATE.DATA.SYNTH_STYLE must be one of "
                              f"{', '.join(SYNTH_STYLES)}, got {self.style!r}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ConfigError(f"BIKESTATE.DATA.SYNTH_IMAGE_SIZE must be [width, height], "
                              f"got {list(self.image_size)}")

    def outputs(self):
        return os.path.join(self.folder, SYNTH_COCO_NAME), os.path.join(self.folder, "images")

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
                                      image_size=self.image_size, show_progress=True,
                                      style=self.style, state_probs=self.state_probs)
            # SynthBikes draws every DelftBikes part, so its categories are always PART_NAMES.
            convert_to_coco(ann, os.path.join(tmp, "images"), os.path.join(tmp, SYNTH_COCO_NAME))
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


def prepare_synthbikes(cache_dir, split, num_images, seed, image_size, style="v1",
                       state_probs=None):
    """Generate (once) and return a cached SynthBikes split.

    Args:
        cache_dir (str): the cache folder (``BIKESTATE.DATA.SYNTH_CACHE_DIR``).
        split (str): a name for the folder, e.g. ``"train"``.
        num_images (int): images in the split.
        seed (int): generator seed.
        image_size (tuple[int, int]): ``(width, height)``.
        style (str): the generator's style (``v1``, ``v2``).
        state_probs (sequence[float] or None): shares of intact, damaged, absent, occluded
            parts; None: the generator's default (DelftBikes') shares.
    Returns:
        tuple[str, str]: ``(coco_json, image_root)`` of the complete split.
    """
    source = SynthSource(split, cache_dir=cache_dir, num_images=num_images, seed=seed,
                         image_size=tuple(image_size), style=style, state_probs=state_probs)
    source.check()
    source.prepare()
    return source.outputs()
