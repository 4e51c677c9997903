"""Finding and reading the photos a user points the predictor at.

Users give image files, folders and glob patterns, and their photos come in every flavour a
camera or an editor writes: JPEG, PNG, grayscale, RGBA, 16-bit, EXIF-rotated phone photos,
animated GIFs. :func:`read_image` turns each of them into an upright 8-bit 3-channel array, the
way the model was trained on, and raises :class:`UnreadableImageError` (one line naming the
file) for a file that cannot be decoded, so that a caller can report it and go on with the
other photos. The reader itself lives in :mod:`bikestate.utils.images` (training reads through
it too).
"""
import glob
import logging
import os

from ..utils.images import NotAnImageError, UnreadableImageError, read_image

logger = logging.getLogger(__name__)

# Extensions taken as images when a folder or a glob is expanded (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

_GLOB_CHARS = set("*?[")


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
