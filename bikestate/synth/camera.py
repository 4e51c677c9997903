"""Camera effects of SynthBikes v2: what a phone or compact camera does to a picture.

Exposure (under- and over-exposed, backlit), white balance (colour casts), vignetting, lens or
motion blur, a printed date stamp and sensor noise, in the order a camera applies them. JPEG
compression (with a wider quality range than v1) is applied when the picture is written.
"""
import math
from statistics import NormalDist

import cv2
import numpy as np

__all__ = ["apply_camera"]

# (R, G, B) gains of common light sources relative to daylight.
_CASTS = [(1.0, 1.0, 1.0), (1.12, 1.0, 0.82), (0.88, 0.97, 1.12), (0.95, 1.06, 0.92),
          (1.06, 1.0, 0.94)]


def _light_map(rng, width, height):
    """Exposure x white balance x directional fall-off x vignetting, times 128, uint8 (h, w, 3).

    Made at 1/16 resolution and resized: every term is smooth.
    """
    sw, sh = max(width // 16, 2), max(height // 16, 2)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    xx, yy = xx / (sw - 1) - 0.5, yy / (sh - 1) - 0.5
    exposure = math.exp(rng.normal(-0.1, 0.3))
    cast = np.asarray(_CASTS[rng.integers(len(_CASTS))], np.float32) * rng.uniform(0.95, 1.05, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = 1.0 + rng.uniform(0.0, 0.5) * (xx * math.cos(angle) + yy * math.sin(angle))
    vignette = 1.0 - rng.uniform(0.0, 0.6) * (xx ** 2 + yy ** 2) * 2
    small = (exposure * ramp * vignette)[..., None] * cast
    # In 1/128 steps as uint8 (gains up to 2): resizing and multiplying bytes is 3x cheaper than
    # floats on a full picture.
    small = np.clip(np.round(small * 128), 0, 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _motion_kernel(rng):
    length = int(rng.integers(3, 9))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return kernel / max(kernel.sum(), 1e-6)


def _date_stamp(rng, img):
    """Orange digits in a corner, as compact cameras print them."""
    h, w = img.shape[:2]
    year, month, day = rng.integers(98, 125) % 100, rng.integers(1, 13), rng.integers(1, 29)
    text = [f"'{year:02d} {month:2d} {day:2d}", f"{day:02d}.{month:02d}.{year:02d}",
            f"20{year:02d}/{month:02d}/{day:02d}"][rng.integers(3)]
    scale = h / 480 * rng.uniform(0.6, 0.9)
    thick = max(int(round(scale * 2)), 1)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    margin = int(0.04 * w)
    x = w - tw - margin if rng.random() < 0.8 else margin
    y = h - margin
    color = (255, int(rng.integers(120, 175)), int(rng.integers(20, 60)))
    layer = img.copy()
    cv2.putText(layer, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
    # Slight glow: the stamp is exposed onto the picture, not drawn over it.
    img[:] = cv2.addWeighted(cv2.GaussianBlur(layer, (0, 0), 0.8), 0.5, layer, 0.5, 0)


def apply_camera(rng, img):
    """Return ``img`` (H x W x 3 uint8 RGB) as a camera would have recorded it."""
    h, w = img.shape[:2]
    out = cv2.multiply(img, _light_map(rng, w, h), scale=1 / 128)
    if rng.random() < 0.3:  # lifted shadows of a dim or backlit shot, or contrast of a sunny one
        gamma = rng.uniform(0.7, 1.4)
        out = cv2.LUT(out, (255 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8))
    blur = rng.random()
    if blur < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    elif blur < 0.45:
        out = cv2.filter2D(out, -1, _motion_kernel(rng))
    if rng.random() < 0.15:
        _date_stamp(rng, out)
    # Sensor noise: luminance noise per pixel, colour noise in 2 x 2 blotches (as demosaicing
    # leaves it).
    luminance = _noise(rng, (h, w), rng.uniform(1.0, 6.0))
    chroma = _noise(rng, ((h + 1) // 2, (w + 1) // 2, 3), rng.uniform(0.0, 4.0))
    noise = cv2.add(cv2.resize(chroma, (w, h), interpolation=cv2.INTER_NEAREST),
                    cv2.merge([luminance, luminance, luminance]))
    return cv2.add(out, noise, dtype=cv2.CV_8U)  # saturating


# Gaussian quantiles of 256 equal-probability bins: a random byte looked up here is a Gaussian
# sample (to 1/256 in probability), at a fraction of the cost of ``standard_normal``.
_GAUSS_TABLE = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])


def _noise(rng, shape, sigma):
    """Zero-mean Gaussian noise of standard deviation ``sigma``, int16 of ``shape``."""
    table = np.round(_GAUSS_TABLE * sigma).astype(np.int16)
    raw = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)
    return cv2.LUT(raw, table)
