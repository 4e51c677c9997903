"""Finding and reading the photos a user points the predictor at.

Users give image files, folders and glob patterns, and their photos come in every flavour a
camera or an editor writes: JPEG, PNG, grayscale, RGBA, 16-bit, EXIF-rotated phone photos,
animated GIFs. :func:`read_image` turns each of them into an upright 8-bit 3-channel array, the
way the model was trained on, and raises :class:`UnreadableImageError` (one line naming the
file) for a file that cannot be decoded, so that a caller can report it and go on with the
other photos.
"""
import glob
import logging
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Extensions taken as images when a folder or a glob is expanded (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# Colour that transparent pixels of RGBA / LA / palette images are composited onto: a white
# background is what a viewer shows, and keeps a cut-out bike from standing on black.
TRANSPARENT_BACKGROUND = (255, 255, 255)

_GLOB_CHARS = set("*?[")


class UnreadableImageError(OSError):
    """An image file that exists but cannot be decoded (truncated, corrupt, not an image)."""


class NotAnImageError(UnreadableImageError):
    """A file in no image format Pillow knows (a text file, a PDF, an empty file): as opposed
    to an image file that is damaged."""


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


def read_image(path, format="BGR", notes=None, name=None):
    """Read a photo as the upright, 8-bit, 3-channel array the model expects.

    What users' files need beyond ``cv2.imread``:

    * EXIF orientation is applied (a phone photo stored sideways comes back upright, so boxes
      are in the frame the user sees), as detectron2's ``read_image`` does;
    * 1-bit, grayscale, palette, 16- and 32-bit integer, floating-point and CMYK images become
      3 channels of 8 bits; transparency is composited onto :data:`TRANSPARENT_BACKGROUND`;
    * an animated GIF, WebP or PNG gives its first frame, a multi-page TIFF its first page;
    * the whole file is decoded here, so a truncated or corrupt file raises now;
    * an image of more pixels than Pillow's limit (``PIL.Image.MAX_IMAGE_PIXELS``, the guard
      against decompression bombs) is refused before it is decoded.

    Args:
        path (str or file object): image file, or a binary file object (e.g. ``io.BytesIO`` of
            an upload).
        format (str): "BGR" or "RGB" channel order of the result.
        notes (list or None): when given, a short sentence is appended for each choice made
            for the user (e.g. ``"animated: the first of 12 frames is inspected"``).
        name (str or None): how messages name the image (default: ``path``).

    Returns:
        np.ndarray: uint8 array of shape (H, W, 3), H x W the upright size.

    Raises:
        NotAnImageError: the file is in no image format (a subclass of the next).
        UnreadableImageError: the file cannot be opened or decoded as an image.
    """
    if format not in ("BGR", "RGB"):
        raise ValueError(f"format must be 'BGR' or 'RGB', not {format!r}")
    name = path if name is None else name
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Between the limit and twice the limit Pillow only warns; it is refused below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if limit and width * height > limit:
                raise UnreadableImageError(
                    f"{name}: cannot read image ({width}x{height} is {width * height} pixels, "
                    f"more than the limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS))")
            frames = getattr(image, "n_frames", 1)
            image.load()  # decode fully: truncation shows up here, not later
            if frames > 1 and notes is not None:
                notes.append(f"multi-page TIFF: the first of {frames} pages is inspected"
                             if image.format == "TIFF"
                             else f"animated: the first of {frames} frames is inspected")
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except Image.DecompressionBombError as e:
        raise UnreadableImageError(
            f"{name}: cannot read image (more than twice the limit of {limit} pixels "
            f"(PIL.Image.MAX_IMAGE_PIXELS))") from e
    except UnidentifiedImageError as e:
        raise NotAnImageError(f"{name}: cannot read image (not an image file in a format "
                              f"Pillow knows)") from e
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, UnreadableImageError):
            raise
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UnreadableImageError(f"{name}: cannot read image ({reason})") from e
    array = np.asarray(rgb, dtype=np.uint8)
    return np.ascontiguousarray(array[:, :, ::-1]) if format == "BGR" else array


def _to_rgb(image):
    """PIL image of any mode -> PIL RGB image (8 bits per channel)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # High bit depth: stretch to 8 bits rather than letting convert() clip at 255. Floating
        # point images within [0, 1] are read as 0 = black, 1 = white; NaN and infinities
        # (no value) are black; negative values are clipped to black.
        values = np.asarray(image, dtype=np.float64)
        values = np.where(np.isfinite(values), values, 0.0)
        high = values.max(initial=0.0)
        if image.mode == "F" and high <= 1.0:
            values = values * 255.0
        elif high > 255:
            values = values * (255.0 / high)
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, TRANSPARENT_BACKGROUND + (255,))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")
