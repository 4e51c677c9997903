"""Occluders: objects (posts, boards, cloth) laid over the parts whose state is ``occluded``.

A part counts as occluded when occluders cover at least :data:`MIN_OCCLUDED_COVERAGE` of its box;
occluders are chosen to keep that cover low on the parts that are meant to stay visible.
"""
import math

import cv2
import numpy as np

from ..constants import STATE_ABSENT, STATE_OCCLUDED
from .drawing import AA, ONE, SHIFT
from .geometry import rotate_about

__all__ = ["MIN_OCCLUDED_COVERAGE", "place_occluders", "draw_occluders", "draw_occluders_v2"]

# A part counts as occluded when occluders cover at least this fraction of its box.
MIN_OCCLUDED_COVERAGE = 0.40


def _occluder_polygon(rng, box, kind):
    """Candidate occluder (pixel polygon) covering a good share of ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 6.0), max(y1 - y0, 6.0)
    cover = rng.uniform(0.5, 0.8)
    if kind == "post":  # vertical band: covers `cover` of the width, all of the height
        bw = w * cover
        bx = x0 + rng.uniform(0, w - bw)
        ext0, ext1 = rng.uniform(0.05, 0.3) * h + 2, rng.uniform(0.05, 0.3) * h + 2
        pts = [(bx, y0 - ext0), (bx + bw, y0 - ext0), (bx + bw, y1 + ext1), (bx, y1 + ext1)]
    elif kind == "board":  # horizontal band
        bh = h * cover
        by = y0 + rng.uniform(0, h - bh)
        ext0, ext1 = rng.uniform(0.05, 0.3) * w + 2, rng.uniform(0.05, 0.3) * w + 2
        pts = [(x0 - ext0, by), (x1 + ext1, by), (x1 + ext1, by + bh), (x0 - ext0, by + bh)]
        ang = rng.uniform(-12, 12)
        c = np.array([(x0 + x1) / 2, by + bh / 2])
        return rotate_about(np.array(pts, float), c, ang)
    else:  # blob: an irregular cloth/bag over the box centre
        c = np.array([x0 + rng.uniform(0.3, 0.7) * w, y0 + rng.uniform(0.3, 0.7) * h])
        ang = np.sort(rng.uniform(0, 2 * math.pi, 9))
        rad = rng.uniform(0.45, 0.7, 9) * math.sqrt(cover)
        pts = np.stack([c[0] + rad * w * np.cos(ang), c[1] + rad * h * np.sin(ang)], 1)
        return pts
    return np.array(pts, float)


def _int_boxes(boxes, width, height):
    """Integer pixel boxes (x0, y0, x1, y1) inside the image, at least 1 px wide and high."""
    b = np.round(boxes).astype(np.int64)
    b[:, 0] = np.clip(b[:, 0], 0, width - 1)
    b[:, 1] = np.clip(b[:, 1], 0, height - 1)
    b[:, 2] = np.clip(b[:, 2], b[:, 0] + 1, width)
    b[:, 3] = np.clip(b[:, 3], b[:, 1] + 1, height)
    return b


def _coverage(mask, ibox, which=None):
    """Fraction of each box (or of boxes ``which``) covered by the non-zero pixels of ``mask``."""
    which = range(len(ibox)) if which is None else which
    cov = np.zeros(len(ibox))
    for i in which:
        x0, y0, x1, y1 = ibox[i]
        cov[i] = cv2.countNonZero(mask[y0:y1, x0:x1]) / float((x1 - x0) * (y1 - y0))
    return cov


def _fill_mask(mask, poly):
    cv2.fillPoly(mask, [np.round(poly * ONE).astype(np.int32)], 1, cv2.LINE_8, SHIFT)


def place_occluders(rng, boxes, states, width, height, covered=None):
    """Choose one occluder per occluded part, keeping collateral cover of other parts low.

    Args:
        boxes: (22, 4) pixel boxes (x0, y0, x1, y1) clipped to the image.
        states: 22 ints.
        covered: H x W uint8 0/1 mask of what already covers the bike (accessories), or None.
            Occluded parts it covers enough need no occluder.
    Returns:
        (polygons, mask, cover): pixel polygons, their union with ``covered`` as an H x W
        uint8 0/1 mask, and the fraction of each box that mask covers.
    """
    ibox = _int_boxes(boxes, width, height)
    if covered is None:
        mask = np.zeros((height, width), np.uint8)
        cov = np.zeros(len(ibox))
    else:
        mask = covered.copy()
        pre_cov = _coverage(mask, ibox)
        cov = pre_cov.copy()
    polys = []
    # Visible parts that are not meant to be occluded: covering them would change their state.
    bystanders = [j for j, s in enumerate(states) if s not in (STATE_ABSENT, STATE_OCCLUDED)]
    for i in [i for i, s in enumerate(states) if s == STATE_OCCLUDED]:
        if covered is not None and pre_cov[i] >= MIN_OCCLUDED_COVERAGE + 0.03:
            continue
        best = None
        for attempt in range(7):
            if attempt < 6:
                poly = _occluder_polygon(rng, boxes[i], ["post", "board", "blob"][rng.integers(3)])
            else:  # fallback that always works: a cloth over the whole part
                x0, y0, x1, y1 = boxes[i] + np.array([-2, -2, 2, 2])
                poly = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            cand = mask.copy()
            _fill_mask(cand, poly)
            px0, py0 = poly.min(0)
            px1, py1 = poly.max(0)
            touched = np.nonzero((ibox[:, 0] <= px1) & (ibox[:, 2] >= px0) &
                                 (ibox[:, 1] <= py1) & (ibox[:, 3] >= py0))[0]
            cand_cov = cov.copy()
            cand_cov[touched] = _coverage(cand, ibox, touched)[touched]
            if cand_cov[i] < MIN_OCCLUDED_COVERAGE + 0.03 and attempt < 6:
                continue
            harm = float(np.sum(np.maximum(cand_cov[bystanders] - 0.1, 0))) if bystanders else 0.
            if best is None or harm < best[0]:
                best = (harm, poly, cand, cand_cov)
            if best[0] == 0.0 or (best is not None and attempt >= 3):
                break
        polys.append(best[1])
        mask, cov = best[2], best[3]
    return polys, mask, cov


def draw_occluders(rng, img, polys):
    """Paint occluders as textured objects (cardboard, cloth, plants, tape) over the bike."""
    for poly in polys:
        ipoly = np.round(poly * ONE).astype(np.int32)
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 1, [img.shape[1], img.shape[0]])
        if x1 <= x0 or y1 <= y0:
            continue
        base = np.array([rng.integers(40, 220) for _ in range(3)], np.float32)
        style = rng.random()
        h, w = y1 - y0, x1 - x0
        if style < 0.35:  # stripes (tape, fabric)
            yy, xx = np.mgrid[0:h, 0:w]
            period = rng.uniform(5, 14)
            stripes = ((xx + yy) // period % 2)[..., None].astype(np.float32)
            tex = base * (0.75 + 0.25 * stripes)
        elif style < 0.7:  # mottled (cloth, plants)
            small = rng.uniform(0.7, 1.15, (max(h // 6, 1), max(w // 6, 1), 1)).astype(np.float32)
            tex = base * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
        else:  # shaded cardboard
            tex = base * np.linspace(0.8, 1.1, w, dtype=np.float32)[None, :, None]
            tex = np.broadcast_to(tex, (h, w, 3))
        tex = np.clip(tex, 0, 255).astype(np.uint8)
        local = np.zeros((h, w), np.uint8)
        cv2.fillPoly(local, [ipoly - np.array([x0, y0], np.int32) * ONE], 1, cv2.LINE_8, SHIFT)
        roi = img[y0:y1, x0:x1]
        roi[local > 0] = tex[local > 0]
        edge = tuple(int(v) for v in base * 0.55)
        cv2.polylines(img, [ipoly], True, edge, 1, AA, SHIFT)


_OBJECT_COLORS = [(60, 60, 62), (35, 45, 70), (120, 90, 60), (150, 150, 150), (90, 30, 30),
                  (40, 70, 40), (180, 160, 120), (200, 200, 195), (20, 20, 22)]


def draw_occluders_v2(rng, img, polys):
    """Paint occluders as solid objects in the scene's light: a base colour shaded across the
    object (round like a post or a bag), low-frequency texture, a darker rim and a soft shadow
    beside it on what lies behind."""
    height, width = img.shape[:2]
    for poly in polys:
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - 4, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 5, [width, height])
        if x1 <= x0 or y1 <= y0:
            continue
        h, w = y1 - y0, x1 - x0
        local = np.zeros((h, w), np.uint8)
        ipoly = np.round((poly - [x0, y0]) * ONE).astype(np.int32)
        cv2.fillPoly(local, [ipoly], 255, cv2.LINE_AA, SHIFT)
        roi = img[y0:y1, x0:x1]
        # Shadow: the object's silhouette, shifted and blurred, darkens the background.
        shift = np.float32([[1, 0, rng.uniform(-4, 4)], [0, 1, rng.uniform(1, 5)]])
        shadow = cv2.GaussianBlur(cv2.warpAffine(local, shift, (w, h)), (0, 0), 2.5)
        keep = 1.0 - rng.uniform(0.2, 0.45) * shadow.astype(np.float32) / 255
        roi[:] = (roi * keep[..., None]).astype(np.uint8)
        base = np.asarray(_OBJECT_COLORS[rng.integers(len(_OBJECT_COLORS))], np.float32)
        base = np.clip(base * rng.uniform(0.8, 1.2, 3), 0, 255)
        # Shading across the object's narrow side, as on a cylinder lit from one side.
        across = np.linspace(-1, 1, w if w < h else h, dtype=np.float32)
        light = 0.75 + 0.3 * np.cos(np.clip(across - rng.uniform(-0.5, 0.5), -1.5, 1.5))
        light = light[None, :] if w < h else light[:, None]
        texture = 1.0 + cv2.resize(rng.uniform(-0.08, 0.08, (max(h // 8, 2), max(w // 8, 2)))
                                   .astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        paint = np.clip(base * (light * texture)[..., None], 0, 255)
        alpha = local.astype(np.float32)[..., None] / 255
        roi[:] = (paint * alpha + roi * (1 - alpha)).astype(np.uint8)
        rim = tuple(int(v) for v in base * 0.5)
        cv2.polylines(img, [np.round(poly * ONE).astype(np.int32)], True, rim, 1, AA, SHIFT)
