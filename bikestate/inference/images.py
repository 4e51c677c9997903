"""Finding and reading the photos a user points the predictor at.

Users give image files, folders and glob patterns, and their photos come in every flavour a
camera or an editor writes: JPEG, PNG, grayscale, RGBA, 16-bit, EXIF-rotated phone photos.
:func:`read_image` turns each of them into an upright 8-bit 3-channel array, the way the model
was trained on, and raises :class:`UnreadableImageError` (one line naming the file) for a file
that cannot be decoded, so that a caller can report it and go on with the other photos.
"""
import glob
import logging
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Extensions taken as images when a folder or a glob is expanded (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Colour that transparent pixels of RGBA / LA / palette images are composited onto: a white
# background is what a viewer shows, and keeps a cut-out bike from standing on black.
TRANSPARENT_BACKGROUND = (255, 255, 255)

_GLOB_CHARS = set("*?[")


class UnreadableImageError(OSError):
    """An image file that exists but cannot be decoded (truncated, corrupt, not an image)."""


def is_image_file(path):
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (the file's content is not read)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def find_images(inputs, recursive=False):
    """Expand image files, folders and glob patterns into a list of image paths.

    Args:
        inputs (list[str]): paths of files or folders, or glob patterns (``**`` allowed).
        recursive (bool): also look into sub-folders of the given folders. Off by default so
            that pointing at a folder does what ``ls`` shows (an ``output/`` folder of earlier
            runs next to the photos is not swept in).

    Returns:
        images (list[str]): image paths, in input order, each folder sorted by name, without
            duplicates.
        skipped (list[str]): files that are not images (by extension), one warning each.
        missing (list[str]): inputs that match nothing on disk.
    """
    images, skipped, missing = [], [], []
    seen = set()

    def add(path):
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        if is_image_file(path):
            images.append(path)
        else:
            skipped.append(path)

    for item in inputs:
        if os.path.isdir(item):
            if recursive:
                found = []
                for root, dirs, files in os.walk(item):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    found.extend(os.path.join(root, f) for f in sorted(files))
            else:
                found = [os.path.join(item, f) for f in sorted(os.listdir(item))]
            for path in found:
                if os.path.isfile(path) and not os.path.basename(path).startswith("."):
                    add(path)
        elif os.path.isfile(item):
            add(item)
        elif _GLOB_CHARS & set(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                missing.append(item)
            for path in matches:
                add(path)
        else:
            missing.append(item)
    return images, skipped, missing


def read_image(path, format="BGR"):
    """Read a photo as the upright, 8-bit, 3-channel array the model expects.

    What users' files need beyond ``cv2.imread``:

    * EXIF orientation is applied (a phone photo stored sideways comes back upright, so boxes
      are in the frame the user sees), as detectron2's ``read_image`` does;
    * grayscale, 16-bit and CMYK images become 3 channels; transparency is composited onto
      :data:`TRANSPARENT_BACKGROUND`;
    * the whole file is decoded here, so a truncated or corrupt file raises now.

    Args:
        path (str): image file.
        format (str): "BGR" or "RGB" channel order of the result.

    Returns:
        np.ndarray: uint8 array of shape (H, W, 3), H x W the upright size.

    Raises:
        UnreadableImageError: the file cannot be opened or decoded as an image.
    """
    if format not in ("BGR", "RGB"):
        raise ValueError(f"format must be 'BGR' or 'RGB', not {format!r}")
    try:
        with Image.open(path) as image:
            image.load()  # decode fully: truncation shows up here, not later
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UnreadableImageError(f"{path}: cannot read image ({reason})") from e
    array = np.asarray(rgb, dtype=np.uint8)
    return np.ascontiguousarray(array[:, :, ::-1]) if format == "BGR" else array


def _to_rgb(image):
    """PIL image of any mode -> PIL RGB image (8 bits per channel)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # High bit depth: stretch to 8 bits rather than letting convert() clip at 255.
        values = np.asarray(image, dtype=np.float64)
        high = values.max()
        scaled = values * (255.0 / high) if high > 255 else values
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, TRANSPARENT_BACKGROUND + (255,))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")
