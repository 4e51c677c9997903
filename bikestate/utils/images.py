"""Reading an image file as the model sees it, for training and for inference alike.

:func:`read_image` turns every flavour of file a camera or an editor writes (JPEG, PNG,
grayscale, RGBA, 16-bit, EXIF-rotated phone photos, animated GIFs) into an upright 8-bit
3-channel array, and raises :class:`UnreadableImageError` (one line naming the file) for a file
that cannot be decoded. The training mapper and the predictor both read through it, so a
transparent or 16-bit image looks the same to the model in training and at inference.
"""
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

__all__ = ["TRANSPARENT_BACKGROUND", "UnreadableImageError", "NotAnImageError", "read_image"]

# Colour that transparent pixels of RGBA / LA / palette images are composited onto: a white
# background is what a viewer shows, and keeps a cut-out bike from standing on black.
TRANSPARENT_BACKGROUND = (255, 255, 255)


class UnreadableImageError(DataError, OSError):
    """An image file that is missing or cannot be decoded (truncated, corrupt, not an image).

    A :class:`~bikestate.utils.errors.DataError` (one line for the user) and an ``OSError`` (what
    file reading raises), with the image in ``file_name`` so that a caller can skip it, count it
    and go on with the others.
    """

    def __init__(self, message, file_name=None, details=()):
        super().__init__(message, details)
        self.file_name = file_name


class NotAnImageError(UnreadableImageError):
    """A file in no image format Pillow knows (a text file, a PDF, an empty file): as opposed
    to an image file that is damaged."""


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
                    f"more than the limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS))", name)
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
            f"(PIL.Image.MAX_IMAGE_PIXELS))", name) from e
    except UnidentifiedImageError as e:
        raise NotAnImageError(f"{name}: cannot read image (not an image file in a format "
                              f"Pillow knows)", name) from e
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, UnreadableImageError):
            raise
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UnreadableImageError(f"{name}: cannot read image ({reason})", name) from e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001  Pillow's decoders fail in many ways on corrupt files
        reason = " ".join(str(e).split())
        raise UnreadableImageError(f"{name}: cannot read image ({type(e).__name__}"
                                   f"{': ' + reason if reason else ''})", name) from e
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
