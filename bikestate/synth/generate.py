"""Writing a SynthBikes dataset: images and DelftBikes-format annotations."""
import os

import cv2
import numpy as np

from ..constants import PART_NAMES, STATE_NAMES
from ..utils.errors import ConfigError
from ..utils.io import atomic_write_bytes, atomic_write_json
from .render import DEFAULT_STATE_PROBS, SYNTH_STYLES, check_state_probs, render_bike

__all__ = ["SYNTH_VERSIONS", "generate_synthbikes"]

# Version of each style's pictures: bump a style's number whenever a change makes the same seed
# draw different images of it, so that cached SynthBikes datasets (bikestate.data.cache) are
# regenerated. v2 version 2: lying and upside-down bikes, bags over saddles; version 3: longtail
# cargo bikes.
SYNTH_VERSIONS = {"v1": 1, "v2": 3}

# JPEG quality range per style: v2 includes the heavy compression of phone uploads.
_JPEG_QUALITY = {"v1": (60, 96), "v2": (35, 93)}


def _image_name(seed, index, style):
    prefix = "synth" if style == "v1" else f"synth_{style}"
    return f"{prefix}_s{seed}_{index:06d}.jpg"


def generate_synthbikes(out_dir, num_images, seed, image_size=(640, 480), state_probs=None,
                        show_progress=True, style="v1"):
    """Write ``num_images`` SynthBikes pictures and their DelftBikes-format annotations.

    Args:
        out_dir (str): output folder; images go to ``out_dir/images/``.
        num_images (int): number of images (> 0).
        seed (int): non-negative; image ``i`` is drawn from ``default_rng([seed, i])``, so the
            result does not depend on the order of generation and file names never collide
            across seeds (``synth_s{seed}_{i:06d}.jpg``; ``synth_v2_s...`` for style v2).
        image_size: (width, height) in pixels.
        state_probs: shares of intact, damaged, absent, occluded; ``None`` = DEFAULT_STATE_PROBS.
        show_progress (bool): show a tqdm progress bar.
        style (str): "v1" (flat drawings, unchanged for a seed) or "v2" (photo-like), see
            :mod:`bikestate.synth.render`.

    Returns:
        str: path of ``out_dir/annotations.json``, written atomically after all images.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) \
            or num_images <= 0:
        raise ConfigError(f"number of images must be a positive integer, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ConfigError(f"image size must be (width, height), got {image_size!r}") from None
    if width < 64 or height < 48:
        raise ConfigError(f"image size must be at least 64x48, got {width}x{height}")
    probs = check_state_probs(DEFAULT_STATE_PROBS if state_probs is None else state_probs)
    if style not in SYNTH_STYLES:
        raise ConfigError(f"style must be one of {', '.join(SYNTH_STYLES)}, got {style!r}")

    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    indices = range(int(num_images))
    if show_progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="SynthBikes", unit="img")
    annotations = {}
    for i in indices:
        rng = np.random.default_rng([int(seed), i])
        img, parts = render_bike(rng, width, height, probs, style=style)
        quality = int(rng.integers(*_JPEG_QUALITY[style]))
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover  (OpenCV always encodes uint8 BGR)
            raise RuntimeError("OpenCV could not encode a JPEG")
        name = _image_name(int(seed), i, style)
        atomic_write_bytes(buf.tobytes(), os.path.join(image_dir, name))
        annotations[name] = _record(width, height, parts)
    json_path = os.path.join(out_dir, "annotations.json")
    atomic_write_json(annotations, json_path)
    return json_path


def _record(width, height, parts):
    """One image's DelftBikes record."""
    out = {}
    for name in PART_NAMES:
        left, top, w, h = parts[name]["box"]
        state = parts[name]["state"]
        out[name] = {
            "part_name": name,
            "absolute_bounding_box": {"left": left, "top": top, "width": w, "height": h},
            "object_state": STATE_NAMES[state],
            "object_state_class": state,
            "trust": 1.0,
        }
    return {"image": {"height": height, "width": width, "channels": 3}, "parts": out}
