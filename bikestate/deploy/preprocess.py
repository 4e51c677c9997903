"""The test-time resize and the way back to the original pixels, without torch.

These reproduce what :class:`bikestate.inference.BikeStatePredictor` does through detectron2
(``ResizeShortestEdge`` at ``MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` with Pillow's bilinear filter,
at least one pixel per side; ``detector_postprocess``: scale, clip, drop empty boxes), so that an
exported graph sees the same pixels and its boxes come back in the same coordinates. The parity
tests of ``tests/deploy`` hold the two to the same numbers.
"""
import numpy as np
from PIL import Image

__all__ = ["resize_shape", "resize_image", "to_original_pixels"]


def resize_shape(height, width, min_size, max_size):
    """(new height, new width) of an image under the test resize.

    The short side becomes ``min_size`` unless the long side would then exceed ``max_size``
    (then the long side becomes ``max_size``); each side is rounded to the nearest pixel and is
    at least 1. ``min_size`` 0 keeps the size.
    """
    if min_size <= 0:
        return height, width
    size = float(min_size)
    scale = size / min(height, width)
    if height < width:
        new_h, new_w = size, scale * width
    else:
        new_h, new_w = scale * height, size
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return max(int(new_h + 0.5), 1), max(int(new_w + 0.5), 1)


def resize_image(image, height, width):
    """uint8 (H, W, 3) image resized to (height, width) with Pillow's bilinear filter."""
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height),
                                                                   Image.BILINEAR)
    return np.asarray(resized)


def to_original_pixels(boxes, resized_size, original_size):
    """Boxes of the resized image in the original image's pixels, clipped to it.

    Args:
        boxes (np.ndarray): float32 (N, 4) XYXY in the pixels of the resized image.
        resized_size, original_size (tuple[int, int]): (height, width) of each.

    Returns:
        (np.ndarray, np.ndarray): float32 (N', 4) boxes, and the (N,) bool mask of the boxes
        kept: those with a positive width and height after clipping.
    """
    (resized_h, resized_w), (height, width) = resized_size, original_size
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    boxes[:, 0::2] *= np.float32(width / resized_w)
    boxes[:, 1::2] *= np.float32(height / resized_h)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], keep
