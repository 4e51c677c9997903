"""Things in SynthBikes v2 scenes that are not the bike: bike racks, poles, parked bikes behind,
and the shadow the bike casts on the ground. All draw on a uint8 RGB canvas in place."""
import math

import cv2
import numpy as np

from .drawing import AA, ONE, SHIFT

__all__ = ["draw_props", "draw_ground_shadow"]


def _shaded_bar(img, pts, thick, color):
    """A round metal tube along the polyline ``pts`` (n, 2): base stroke, a dark lower edge and
    a highlight (the light comes from above)."""
    pts = np.asarray(pts, np.float64)
    d = np.gradient(pts, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)[:, None]
    n *= np.where(n[:, 1:2] > 0, -1.0, 1.0)
    for offset, width, factor in ((0.0, 1.0, 1.0), (-0.3, 0.35, 0.55), (0.25, 0.25, 1.6)):
        c = tuple(int(min(v * factor, 255)) for v in color)
        ipts = np.round((pts + offset * thick * n) * ONE).astype(np.int32)
        cv2.polylines(img, [ipts], False, c, max(int(round(thick * width)), 1), AA, SHIFT)


def _rack(rng, img, ground_y, scale):
    """A row of inverted-U bike stands ("nietjes") along the wall."""
    h, w = img.shape[:2]
    color = tuple(int(v) for v in rng.uniform(110, 200) * rng.uniform(0.9, 1.05, 3))
    height = rng.uniform(0.7, 1.0) * scale * 2
    width = rng.uniform(0.5, 0.9) * scale * 2
    step = width * rng.uniform(1.4, 2.2)
    base = ground_y - rng.uniform(0.0, 0.08) * scale
    thick = max(scale * 0.06, 2.0)
    for x in np.arange(rng.uniform(-width, 0), w + width, step):
        r = width / 2
        arc = [(x + r + r * math.cos(a), base - height + r - r * math.sin(a))
               for a in np.linspace(0, math.pi, 12)]
        _shaded_bar(img, [(x + width, base)] + arc + [(x, base)], thick, color)


def _pole(rng, img, ground_y, scale):
    h, w = img.shape[:2]
    x = rng.uniform(0, w)
    color = tuple(int(v) for v in rng.uniform(40, 190) * rng.uniform(0.85, 1.1, 3))
    top = rng.uniform(-0.2, 0.4) * h
    _shaded_bar(img, [(x, top), (x, ground_y + rng.uniform(0, 0.05) * scale)],
                rng.uniform(0.08, 0.2) * scale, color)


def _parked_bike(rng, img, ground_y, scale):
    """A simplified, low-contrast bike further back: tyres, rims, a few spokes and tubes."""
    h, w = img.shape[:2]
    r = scale * rng.uniform(0.7, 0.95)
    x = rng.uniform(-r, w + r)
    wheelbase = r * rng.uniform(2.8, 3.2)
    y = ground_y - r - rng.uniform(0.0, 0.15) * scale
    dark = tuple(int(v) for v in rng.uniform(25, 70) * np.ones(3))
    frame = tuple(int(v) for v in rng.uniform(30, 200, 3))
    layer = img.copy()
    for cx in (x, x + wheelbase):
        c = (int(cx * ONE), int(y * ONE))
        cv2.circle(layer, c, int(r * ONE), dark, max(int(r * 0.1), 1), AA, SHIFT)
        cv2.circle(layer, c, int(r * 0.88 * ONE), (170, 170, 175), 1, AA, SHIFT)
    bb = (x + wheelbase * 0.42, y + r * 0.15)
    seat = (x + wheelbase * 0.33, y - r * 1.45)
    head = (x + wheelbase * 0.85, y - r * 1.25)
    for p, q in ((x, y), seat), (seat, bb), (bb, (x, y)), (bb, head), (head, (x + wheelbase, y)):
        cv2.line(layer, (int(p[0] * ONE), int(p[1] * ONE)), (int(q[0] * ONE), int(q[1] * ONE)),
                 frame, max(int(r * 0.08), 1), AA, SHIFT)
    alpha = rng.uniform(0.45, 0.8)
    cv2.addWeighted(layer, alpha, img, 1 - alpha, 0, dst=img)


def draw_props(rng, img, ground_y, scale):
    """Racks, poles and parked bikes behind the bike; ``scale`` is its wheel radius in pixels."""
    if rng.random() < 0.3:
        _rack(rng, img, ground_y, scale)
    for _ in range(int(rng.choice([0, 0, 1, 2]))):
        _pole(rng, img, ground_y, scale)
    if rng.random() < 0.2:
        _parked_bike(rng, img, ground_y, scale)
    if rng.random() < 0.25:
        img[:] = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 2.0))  # shallow depth of field


def draw_ground_shadow(rng, img, x0, x1, ground_y, scale):
    """Darken the ground under a bike spanning ``x0..x1`` (soft ellipse, offset by the light)."""
    h, w = img.shape[:2]
    small = 8  # drawn at 1/8 resolution and resized: a soft shadow needs no detail
    mask = np.zeros((max(h // small, 1), max(w // small, 1)), np.float32)
    shift = rng.uniform(-0.3, 0.3) * (x1 - x0)
    centre = (((x0 + x1) / 2 + shift) / small, (ground_y + scale * 0.02) / small)
    axes = ((x1 - x0) * rng.uniform(0.45, 0.6) / small, scale * rng.uniform(0.08, 0.25) / small)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (max(int(axes[0]), 1),
                                                         max(int(axes[1]), 1)),
                0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(axes[1] * 0.6, 1.0))
    rows = np.nonzero(mask.max(1) > 0.01)[0]
    if len(rows) == 0:
        return
    # Only the band of rows the shadow touches is resized and darkened.
    y0, y1 = rows[0] * small, min((rows[-1] + 1) * small, h)
    band = cv2.resize(mask[rows[0]:rows[-1] + 1], (w, (rows[-1] + 1 - rows[0]) * small),
                      interpolation=cv2.INTER_LINEAR)[:y1 - y0]
    keep = 1.0 - rng.uniform(0.25, 0.55) * band
    img[y0:y1] = cv2.multiply(img[y0:y1], cv2.merge([keep] * 3), dtype=cv2.CV_8U)
