"""Everything around the bike: the background (wall, floor, clutter) and the photometric
effects applied to the finished picture (lighting, colour cast, blur, noise)."""
import math

import cv2
import numpy as np

from .drawing import AA

__all__ = ["background_palette", "draw_background", "photometric"]


def background_palette(rng):
    """Muted wall and floor colours, float32 RGB: (wall top, wall bottom, floor top, bottom)."""
    wall = rng.integers(110, 236, 3).astype(np.float32)
    wall = wall * 0.6 + wall.mean() * 0.4
    wall2 = np.clip(wall + rng.uniform(-40, 40, 3), 0, 255)
    floor = np.clip(wall * rng.uniform(0.55, 0.9) + rng.uniform(-15, 15, 3), 0, 255)
    floor2 = np.clip(floor + rng.uniform(-30, 30, 3), 0, 255)
    return tuple(c.astype(np.float32) for c in (wall, wall2, floor, floor2))


def draw_background(rng, palette, width, height, ground_y):
    """Wall + floor gradients, optional texture, tiles or planks, muted clutter: H x W x 3 uint8.

    The smooth layers are made at 1/16 resolution and resized: full-size float maths would cost
    more than drawing the whole bike.
    """
    wall, wall2, floor, floor2 = palette
    mean_color = (wall + wall2) / 2
    gy = int(np.clip(ground_y + rng.uniform(-0.02, 0.06) * height, 0, height))
    sw = max(width // 16, 2)
    textured = rng.random() < 0.5
    tex_amp = rng.uniform(6, 18)
    img = np.empty((height, width, 3), np.uint8)
    for (y0, y1), (c0, c1) in (((0, gy), (wall, wall2)), ((gy, height), (floor, floor2))):
        if y1 <= y0:
            continue
        sh = max((y1 - y0) // 16, 2)
        t = np.linspace(0, 1, sh, dtype=np.float32)[:, None, None]
        small = np.repeat(c0 * (1 - t) + c1 * t, sw, axis=1)
        if textured:  # low-frequency stains / uneven paint, smoothed so no grid shows
            coarse = rng.uniform(-1, 1, (max(sh // 3, 2), max(sw // 3, 2))).astype(np.float32)
            small += cv2.resize(coarse, (sw, sh), interpolation=cv2.INTER_CUBIC)[..., None] * \
                tex_amp
        small = np.clip(small, 0, 255).astype(np.uint8)
        img[y0:y1] = cv2.resize(small, (width, y1 - y0), interpolation=cv2.INTER_LINEAR)
    kind = rng.random()
    if kind < 0.25:  # tiles / bricks on the wall
        step = int(rng.integers(24, 60))
        line_c = tuple(int(v) for v in np.clip(wall * 0.85, 0, 255))
        for y in range(step, gy, step):
            cv2.line(img, (0, y), (width, y), line_c, 1)
        for row, y in enumerate(range(0, gy, step)):
            off = (step if row % 2 else 0)
            for x in range(off, width, step * 2):
                cv2.line(img, (x, y), (x, min(y + step, gy)), line_c, 1)
    elif kind < 0.4:  # planks on the floor
        line_c = tuple(int(v) for v in np.clip(floor * 0.8, 0, 255))
        for y in range(gy + 8, height, int(rng.integers(10, 25))):
            cv2.line(img, (0, y), (width, y), line_c, 1)
    # Muted clutter: boxes, discs, polygons, poles (never bike-like circles with spokes).
    for _ in range(int(rng.integers(0, 7))):
        c = np.clip(mean_color + rng.uniform(-45, 45) + rng.uniform(-20, 20, 3), 0, 255)
        color = tuple(int(v) for v in c)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.04, 0.22) * width
        shape = rng.random()
        if shape < 0.4:
            y1 = int(y + size * rng.uniform(.4, 1.5))
            cv2.rectangle(img, (int(x), int(y)), (int(x + size), y1), color, -1)
        elif shape < 0.6:
            cv2.circle(img, (int(x), int(y)), int(size / 2), color, -1, AA)
        elif shape < 0.8:
            pts = (np.array([x, y]) + rng.uniform(-size, size, (5, 2))).astype(np.int32)
            cv2.fillPoly(img, [cv2.convexHull(pts)], color, AA)
        else:
            cv2.rectangle(img, (int(x), 0), (int(x + size * 0.15), height), color, -1)
    return img



def photometric(rng, img):
    """Lighting (gain, colour cast, directional fall-off), blur and sensor noise."""
    h, w = img.shape[:2]
    gain = (rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    ramp = rng.uniform(0.0, 0.25)
    ang = rng.uniform(0, 2 * math.pi)
    # Linear light fall-off: exact from its 2x2 corner values with bilinear resizing.
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]], np.float32)
    light = 1.0 + ramp * (corners[:, 0] * math.cos(ang) + corners[:, 1] * math.sin(ang))
    small = (light.reshape(2, 2, 1) * gain).astype(np.float32)
    light_map = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.25:
        lit = cv2.multiply(img, light_map, dtype=cv2.CV_32F)
        lit += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(2, 5)
        out = np.clip(lit, 0, 255).astype(np.uint8)
    else:
        out = cv2.multiply(img, light_map, dtype=cv2.CV_8U)
    if rng.random() < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2))
    return out
