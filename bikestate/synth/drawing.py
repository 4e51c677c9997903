"""Drawing primitives of SynthBikes: polylines, polygons, circles and segment bundles in the
canonical bike frame, their placement in pixels, their painted bounds, and the colour helpers."""
import cv2
import numpy as np

__all__ = ["SHIFT", "ONE", "AA", "jitter", "mix", "luma", "Prim", "polyline", "closed_polyline",
           "polygon", "circle", "segments", "Placement", "prim_bounds", "union_bounds",
           "draw_prim"]

SHIFT = 4  # fractional bits of the OpenCV drawing calls: sub-pixel accurate anti-aliased lines
ONE = 1 << SHIFT
AA = cv2.LINE_AA


def jitter(rng, color, amount):
    return tuple(min(max(int(c + d), 0), 255)
                 for c, d in zip(color, rng.integers(-amount, amount + 1, 3)))


def mix(a, b, t):
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def luma(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]



class Prim:
    """One drawing call: kind "line" (open polyline), "closed", "fill", "circle" or "segs"."""

    __slots__ = ("kind", "pts", "thick", "color", "radius", "alpha", "_place", "_px")

    def __init__(self, kind, pts, color, thick=0.0, radius=0.0, alpha=1.0):
        self.kind, self.pts, self.color = kind, np.asarray(pts, dtype=np.float64), color
        self.thick, self.radius, self.alpha = thick, radius, alpha
        self._place = self._px = None

    def pixels(self, place):
        """Pixel coordinates of the points under ``place`` (cached: bounds, then drawing)."""
        if self._place is not place:
            self._place, self._px = place, place.points(self.pts)
        return self._px


def polyline(pts, thick, color):
    return Prim("line", pts, color, thick)


def closed_polyline(pts, thick, color):
    return Prim("closed", pts, color, thick)


def polygon(pts, color, alpha=1.0):
    return Prim("fill", pts, color, alpha=alpha)


def circle(center, radius, color, thick=-1.0):
    return Prim("circle", np.asarray(center, dtype=np.float64)[None], color, thick, radius)


def segments(segments, thick, color):
    """Many separate 2-point lines in one call; ``segments`` has shape (n, 2, 2)."""
    return Prim("segs", np.asarray(segments, dtype=np.float64).reshape(-1, 2), color, thick)


class Placement:
    """Canonical -> pixel mapping: the bike mirrored by ``flip`` (1 or -1), turned by ``angle``
    degrees (clockwise on the screen: y points down), scaled by ``scale`` and moved by
    ``(tx, ty)``. Without a turn: x' = tx + s * flip * x, y' = ty + s * y.

    A turn keeps lengths, so circles stay circles and stroke widths stay ``t * scale``.
    """

    def __init__(self, scale, flip, tx, ty, angle=0.0):
        self.scale, self.flip, self.tx, self.ty, self.angle = scale, flip, tx, ty, angle
        self._add = np.array([tx, ty])
        if angle == 0.0:  # the common upright bike: one multiply-add
            self._mul, self._linear = np.array([scale * flip, scale]), None
        else:
            c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
            self._linear = scale * np.array([[c, -s], [s, c]]) @ np.diag([flip, 1.0])

    def points(self, pts):
        if self._linear is None:
            return pts * self._mul + self._add
        return pts @ self._linear.T + self._add

    def px(self, length):
        return length * self.scale

    def thickness(self, t):
        return max(1, int(round(t * self.scale)))


def prim_bounds(prim, place):
    """Pixel bounds (x0, y0, x1, y1) of what ``prim`` paints."""
    pts = prim.pixels(place)
    if prim.kind == "circle":
        r = place.px(prim.radius) + (place.thickness(prim.thick) / 2 if prim.thick > 0 else 0)
        r += 0.5
        c = pts[0]
        return c[0] - r, c[1] - r, c[0] + r, c[1] + r
    pad = place.thickness(prim.thick) / 2 if prim.kind in ("line", "closed", "segs") else 0.0
    pad += 0.5  # anti-aliased edge
    return (pts[:, 0].min() - pad, pts[:, 1].min() - pad,
            pts[:, 0].max() + pad, pts[:, 1].max() + pad)


def union_bounds(prims, place):
    b = np.array([prim_bounds(p, place) for p in prims])
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


def draw_prim(img, prim, place, color=None):
    """Paint ``prim`` on ``img`` in its colour, or in ``color`` (e.g. 255 on a mask)."""
    pts = prim.pixels(place)
    color = prim.color if color is None else color
    if prim.kind == "circle":
        c = tuple(int(v) for v in np.round(pts[0] * ONE))
        r = int(round(place.px(prim.radius) * ONE))
        t = -1 if prim.thick < 0 else place.thickness(prim.thick)
        cv2.circle(img, c, max(r, ONE // 2), color, t, AA, SHIFT)
        return
    ipts = np.round(pts * ONE).astype(np.int32)
    if prim.kind == "fill":
        if prim.alpha >= 1.0:
            cv2.fillPoly(img, [ipts], color, AA, SHIFT)
            return
        # Translucent fill (dress guard panel): blend only inside the polygon's bounding box.
        h, w = img.shape[:2]
        x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]
        layer = roi.copy()
        cv2.fillPoly(layer, [ipts - np.array([x0, y0], np.int32) * ONE], color, AA, SHIFT)
        cv2.addWeighted(layer, prim.alpha, roi, 1 - prim.alpha, 0, dst=roi)
        return
    t = place.thickness(prim.thick)
    if prim.kind == "segs":
        cv2.polylines(img, list(ipts.reshape(-1, 2, 2)), False, color, t, AA, SHIFT)
    else:
        cv2.polylines(img, [ipts], prim.kind == "closed", color, t, AA, SHIFT)

