"""A contact sheet of SynthBikes samples with their ground truth, to look at what the generator
draws: every part's box in the colour of its state (detectron2's Visualizer), a legend below."""
import cv2
import numpy as np

from ..constants import PART_NAMES, STATE_COLORS, STATE_NAMES
from .render import DEFAULT_STATE_PROBS, render_bike

__all__ = ["draw_gallery"]


def _tile(image, parts, tile_size):
    """One sample with its 22 boxes, resized to ``tile_size`` (width, height)."""
    from detectron2.utils.visualizer import Visualizer

    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in
                      (parts[n]["box"] for n in PART_NAMES)], np.float32)
    colors = [STATE_COLORS[parts[n]["state"]] for n in PART_NAMES]
    vis = Visualizer(image, metadata=None)
    vis.overlay_instances(boxes=boxes, assigned_colors=colors, alpha=0.0)
    drawn = vis.get_output().get_image()
    return cv2.resize(drawn, tile_size, interpolation=cv2.INTER_AREA)


def _legend(width, height):
    strip = np.full((height, width, 3), 32, np.uint8)
    x = 12
    for name, color in zip(STATE_NAMES, STATE_COLORS):
        rgb = tuple(int(255 * c) for c in color)
        cv2.rectangle(strip, (x, height // 4), (x + height // 2, 3 * height // 4), rgb, -1)
        cv2.putText(strip, name, (x + height // 2 + 8, 2 * height // 3), cv2.FONT_HERSHEY_SIMPLEX,
                    height / 48, (235, 235, 235), 1, cv2.LINE_AA)
        x += height // 2 + 24 + 14 * len(name) * height // 36
    return strip


def draw_gallery(style, seed, num=24, columns=6, image_size=(640, 480), tile_size=(320, 240),
                 state_probs=DEFAULT_STATE_PROBS, show_progress=True):
    """Draw ``num`` samples (image ``i`` from ``default_rng([seed, i])``, as the generator
    does) with their boxes into one picture.

    Returns:
        np.ndarray: uint8 RGB, (rows * tile height + legend) x (columns * tile width) x 3.
    """
    indices = range(num)
    if show_progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="gallery", unit="img")
    tw, th = tile_size
    rows = (num + columns - 1) // columns
    sheet = np.full((rows * th, columns * tw, 3), 255, np.uint8)
    for i in indices:
        image, parts = render_bike(np.random.default_rng([seed, i]), *image_size, state_probs,
                                   style=style)
        r, c = divmod(i, columns)
        sheet[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = _tile(image, parts, tile_size)
    sheet[th::th] = sheet[:, tw::tw] = 255  # a white line between tiles
    return np.concatenate([sheet, _legend(sheet.shape[1], 36)])
