"""Procedural surfaces of SynthBikes v2 scenes: walls (painted plaster with seams, brick, boards,
corrugated metal) and floors seen in perspective (herring-bone and stretcher-bond paving,
concrete slabs, asphalt, planks, tiles).

Every surface is a float32 H x W x 3 RGB array computed with vectorised numpy; large-scale
variation (stains, uneven light) is made at low resolution and resized, fine grain at full
resolution, so a 900 x 700 canvas costs a few milliseconds.
"""
import cv2
import numpy as np

__all__ = ["draw_wall", "draw_floor"]

_PAINT = [(236, 234, 228), (222, 218, 205), (200, 200, 196), (182, 190, 196), (214, 200, 170),
          (160, 170, 160), (120, 126, 130), (236, 226, 200), (90, 96, 104), (196, 170, 140)]
_BRICK = [(150, 70, 50), (125, 60, 45), (170, 95, 65), (110, 75, 60), (160, 120, 90),
          (95, 90, 88)]
_PAVER = [(120, 118, 115), (150, 146, 140), (85, 84, 86), (140, 85, 70), (110, 70, 60),
          (175, 170, 160)]


def _choose(rng, colors, jitter):
    c = np.asarray(colors[rng.integers(len(colors))], np.float32)
    return np.clip(c + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


def _smooth_noise(rng, h, w, cells, amplitude):
    """Low-frequency noise, float32 (h, w): ``cells`` random values across the width, resized."""
    sw = max(int(cells), 2)
    sh = max(int(round(cells * h / max(w, 1))), 2)
    small = rng.uniform(-1, 1, (sh, sw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * amplitude


def _grain(rng, h, w, amplitude):
    """Fine grain at half resolution (plaster, concrete), float32 (h, w)."""
    small = rng.standard_normal((max(h // 2, 1), max(w // 2, 1)), dtype=np.float32) * amplitude
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _brick_pattern(u, v, brick_w, brick_h, mortar):
    """Stretcher bond on coordinates (u, v): (brick id, mortar mask), arrays shaped like u."""
    row = np.floor(v / brick_h)
    shifted = u + (row % 2) * brick_w / 2
    col = np.floor(shifted / brick_w)
    fu, fv = shifted - col * brick_w, v - row * brick_h
    joint = (fu < mortar) | (fv < mortar)
    return col * 7919 + row * 104729, joint


def _herringbone(u, v, mortar):
    """Herring-bone bond of 2 x 1 pavers on unit cells: (paver id, mortar mask).

    Cell (i, j) with r = (i - j) mod 4 is the left (r=0) or right (1) half of a horizontal paver,
    or the lower (2) or upper (3) half of a vertical one: every cell is covered exactly once.
    """
    i, j = np.floor(u), np.floor(v)
    fu, fv = u - i, v - j
    r = (i - j) % 4
    anchor_i = np.where(r == 1, i - 1, i)
    anchor_j = np.where(r == 3, j + 1, j)
    left, right, top, bottom = fu < mortar, fu > 1 - mortar, fv < mortar, fv > 1 - mortar
    joint = np.where(r == 0, left | top | bottom,
                     np.where(r == 1, right | top | bottom,
                              np.where(r == 2, left | right | bottom, left | right | top)))
    return anchor_i * 7919 + anchor_j * 104729 + r // 2 * 15485863, joint


def _color_by_id(rng, ids, base, spread):
    """Per-brick colour: ``base`` varied by a table of 256 random shades indexed by brick id."""
    table = np.clip(base + rng.uniform(-spread, spread, (256, 1)) +
                    rng.uniform(-spread / 3, spread / 3, (256, 3)), 0, 255).astype(np.float32)
    return table[(ids.astype(np.int64) * 2654435761 >> 7) % 256]


def draw_wall(rng, height, width):
    """A wall behind the bike: float32 (height, width, 3)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.choice(["plaster", "brick", "boards", "metal"], p=[0.45, 0.3, 0.15, 0.1])
    if kind == "brick":
        bw = rng.uniform(0.045, 0.09) * width
        ids, joint = _brick_pattern(xx, yy, bw, bw * rng.uniform(0.3, 0.4), rng.uniform(1.0, 2.5))
        img = _color_by_id(rng, ids, _choose(rng, _BRICK, 15), 18)
        mortar = _choose(rng, [(190, 185, 175), (130, 125, 120), (90, 88, 85)], 10)
        img[joint] = mortar
    else:
        base = _choose(rng, _PAINT, 12)
        img = np.broadcast_to(base, (height, width, 3)).copy()
        if kind == "boards":  # vertical boarding: a seam and a shaded edge per board
            period = rng.uniform(0.03, 0.08) * width
            f = (xx % period) / period
            img *= (0.93 + 0.1 * f - 0.25 * (f < 0.06))[..., None]
        elif kind == "metal":  # corrugated sheet: a sinusoidal shading
            period = rng.uniform(0.015, 0.035) * width
            img *= (0.9 + 0.1 * np.sin(xx * 2 * np.pi / period))[..., None]
        else:  # plaster or painted panels: seams with a dark and a light side
            step = rng.uniform(0.18, 0.6) * width
            for x in np.arange(rng.uniform(0, step), width, step):
                x0 = int(x)
                img[:, max(x0 - 1, 0):x0 + 1] *= 0.72
                img[:, x0 + 1:x0 + 2] *= 1.08
            if rng.random() < 0.5:  # a horizontal joint or a dado line
                y = int(rng.uniform(0.3, 0.8) * height)
                img[y:y + 2] *= 0.75
                if rng.random() < 0.5:
                    img[y + 2:] *= rng.uniform(0.75, 1.1)
        img += _grain(rng, height, width, rng.uniform(1.5, 5))[..., None]
    img += _smooth_noise(rng, height, width, rng.uniform(3, 8), rng.uniform(4, 18))[..., None]
    return img


def draw_floor(rng, height, width):
    """The ground in front of the wall, in perspective: float32 (height, width, 3).

    Row 0 is where floor meets wall; rows further down are nearer the camera. A point at row
    y lies at depth ``A / (y + d)`` with the horizon ``d`` pixels above row 0.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    d = rng.uniform(0.3, 1.5) * height
    near_ppu = rng.uniform(0.03, 0.08) * width  # pixels per paver unit at the bottom row
    ppu = near_ppu * (yy + d) / (height + d)
    u = (xx - width * rng.uniform(0.3, 0.7)) / ppu
    a = (height + d) ** 2 / (near_ppu * rng.uniform(0.35, 0.7))
    v = a / (yy + d)
    kind = rng.choice(["herringbone", "stretcher", "slabs", "asphalt", "planks", "tiles"],
                      p=[0.25, 0.2, 0.15, 0.15, 0.15, 0.1])
    # Joints at least ~1 pixel wide at every depth: thinner ones would break into dashes.
    mortar = np.maximum(np.maximum(0.06, 1.0 / ppu), a / (yy + d) ** 2)
    if kind == "herringbone":
        c, s = np.float32(np.sqrt(0.5)), np.float32(np.sqrt(0.5))
        ids, joint = _herringbone(c * u + s * v, -s * u + c * v, mortar)
    elif kind == "stretcher":
        ids, joint = _brick_pattern(u, v, 2.0, 1.0, mortar)
    elif kind == "slabs":
        ids, joint = _brick_pattern(u / 3, v / 3, 1.0, 1.0, mortar / 3)
        ids = ids * 0
    elif kind == "planks":
        ids, joint = _brick_pattern(v / 6, u / 1.2, 1.0, 1.0, mortar / 3)
    elif kind == "tiles":
        ids, joint = _brick_pattern(u / 2, v / 2, 1.0, 1.0, mortar / 2)
        ids = ids % 2
    else:
        ids, joint = np.zeros_like(u), np.zeros(u.shape, bool)
    palette = _PAVER if kind != "planks" else [(150, 110, 70), (120, 85, 55), (180, 150, 110)]
    img = _color_by_id(rng, ids, _choose(rng, palette, 12), 14 if kind != "tiles" else 40)
    img[joint] *= rng.uniform(0.55, 0.8)
    img += _grain(rng, height, width, rng.uniform(2, 7 if kind == "asphalt" else 4))[..., None]
    img += _smooth_noise(rng, height, width, rng.uniform(2, 6), rng.uniform(5, 15))[..., None]
    return img
