"""Viewpoint of a SynthBikes v2 picture: the camera's yaw and roll as one perspective warp.

The scene (background, props and bike) is drawn flat on a canvas larger than the picture, as if
seen square-on; a homography then turns it into the picture a camera yawed about the vertical
axis and rolled about its optical axis would take: bikes seen at an angle (3/4 view) have
elliptic wheels and a nearer end larger than the farther one. Part boxes are the bounds of the
warped geometry, not warped boxes, so they stay tight.
"""
import math

import cv2
import numpy as np

__all__ = ["CANVAS_MARGIN", "Outline", "canvas_size", "sample_view", "warp_points", "warp_image"]

# The canvas exceeds the picture by this fraction of its size on every side: a yawed or rolled
# picture never shows past the canvas's edge.
CANVAS_MARGIN = 0.12


def sample_view(rng, width, height, from_above=False):
    """Draw a viewpoint; return the 3 x 3 homography from canvas to picture pixels.

    Args:
        width, height (int): picture size; the canvas is ``canvas_size(width, height)``.
        from_above (bool): the canvas is the ground (a lying bike) seen by a camera pointing
            down at 35-80 degrees: the canvas's height is foreshortened by the sine of that.

    Yaw is mostly small (people photograph bikes side-on) with a tail up to 40 degrees; roll
    is a phone held slightly askew. The picture is zoomed until it lies wholly inside the canvas.
    """
    cw, ch = canvas_size(width, height)
    yaw = rng.normal(0.0, 14.0) if rng.random() < 0.8 else rng.uniform(-40.0, 40.0)
    yaw = float(np.clip(yaw, -40.0, 40.0))
    roll = float(np.clip(rng.normal(0.0, 3.0), -9.0, 9.0))
    focal = rng.uniform(0.9, 1.6) * width  # phone wide angle to short tele
    foreshorten = math.sin(math.radians(rng.uniform(35.0, 80.0))) if from_above else 1.0
    sy, cy = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))
    # The canvas plane rotated by ``yaw`` about its vertical centre line, at distance ``focal``:
    # x' = x cos / (1 + x sin / f), y' = y / (1 + x sin / f) in centred coordinates.
    project = np.array([[cy, 0.0, 0.0], [0.0, foreshorten, 0.0], [sy / focal, 0.0, 1.0]])
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    rotate = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    centre_canvas = np.array([[1.0, 0.0, -cw / 2], [0.0, 1.0, -ch / 2], [0.0, 0.0, 1.0]])
    centre_picture = np.array([[1.0, 0.0, width / 2], [0.0, 1.0, height / 2], [0.0, 0.0, 1.0]])
    core = rotate @ project @ centre_canvas
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64)
    zoom = 1.0
    for _ in range(40):
        H = centre_picture @ np.diag([zoom, zoom, 1.0]) @ core
        back = warp_points(np.linalg.inv(H), corners)
        if np.all((back >= 0) & (back <= [cw, ch])):
            break
        zoom *= 1.04
    return H


def canvas_size(width, height):
    """(width, height) of the canvas for a ``width`` x ``height`` picture."""
    return (int(round(width * (1 + 2 * CANVAS_MARGIN))),
            int(round(height * (1 + 2 * CANVAS_MARGIN))))


def warp_points(H, pts):
    """Apply homography ``H`` (3, 3) to points ``pts`` (n, 2); return (n, 2)."""
    pts = np.asarray(pts, np.float64)
    q = pts @ H[:, :2].T + H[:, 2]
    return q[:, :2] / q[:, 2:3]


_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * math.pi, 24, endpoint=False)),
                    np.sin(np.linspace(0, 2 * math.pi, 24, endpoint=False))], 1) / \
    math.cos(math.pi / 24)  # a 24-gon around the unit circle
_CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])


class Outline:
    """Points whose convex hull contains what a list of primitives paints, for any placement.

    Built once per part (a Python loop over its primitives); :meth:`pixels` is then one
    vectorised expression per placement, so trying several placements and viewpoints is cheap.
    Stroke widths follow :meth:`.drawing.Placement.thickness` (at least one pixel) and half a
    pixel of anti-aliasing is added, as :func:`.drawing.prim_bounds` does.
    """

    def __init__(self, prims):
        # Strokes and fills: each point with the 4 corners of its square pad. Circles: a 24-gon
        # around each centre. Collected first, expanded with one numpy call each.
        pts, strokes, centres, radii, rings = [], [], [], [], []
        for p in prims:
            if p.kind == "circle":
                centres.append(p.pts[0])
                radii.append(p.radius)
                rings.append(max(p.thick, 0.0))
            else:
                pts.append(p.pts)
                stroke = p.thick if p.kind in ("line", "closed", "segs") else 0.0
                strokes.append(np.full(len(p.pts), stroke))
        pts = np.concatenate(pts) if pts else np.zeros((0, 2))
        strokes = np.concatenate(strokes) if strokes else np.zeros(0)
        n, m = len(pts), len(centres) * len(_CIRCLE)
        centres = np.asarray(centres, np.float64).reshape(-1, 2)
        self.points = np.concatenate([np.tile(pts, (4, 1)),
                                      np.repeat(centres, len(_CIRCLE), 0)])
        self.corner = np.concatenate([np.repeat(_CORNERS, n, 0), np.zeros((m, 2))])
        self.radial = np.concatenate([np.zeros((4 * n, 2)), np.tile(_CIRCLE, (len(centres), 1))])
        self.radius = np.concatenate([np.zeros(4 * n), np.repeat(radii, len(_CIRCLE))])
        self.thick = np.concatenate([np.tile(strokes, 4), np.repeat(rings, len(_CIRCLE))])

    def pixels(self, place):
        """Canvas pixel points under ``place``, shape (n, 2)."""
        s = place.scale
        stroke = np.where(self.thick > 0, np.maximum(1, np.round(self.thick * s)), 0.0)
        pad = stroke / 2 + 0.5
        base = place.points(self.points)
        return base + self.radial * (self.radius * s + pad)[:, None] + self.corner * pad[:, None]

    def bounds(self, place, H):
        """Pixel bounds (x0, y0, x1, y1) in the picture under ``place`` and homography ``H``."""
        q = warp_points(H, self.pixels(place))
        return q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()

    @classmethod
    def of_groups(cls, groups):
        """One outline of several primitive lists (e.g. one per part), for
        :meth:`group_bounds`."""
        outlines = [cls(prims) for prims in groups]
        joined = cls([])
        for key in ("points", "corner", "radial", "radius", "thick"):
            setattr(joined, key, np.concatenate([getattr(o, key) for o in outlines]))
        sizes = [len(o.points) for o in outlines]
        joined.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return joined

    def group_bounds(self, place, H):
        """(groups, 4) bounds of each group of :meth:`of_groups`: one vectorised pass."""
        q = warp_points(H, self.pixels(place))
        return np.stack([np.minimum.reduceat(q[:, 0], self.starts),
                         np.minimum.reduceat(q[:, 1], self.starts),
                         np.maximum.reduceat(q[:, 0], self.starts),
                         np.maximum.reduceat(q[:, 1], self.starts)], 1)


def warp_image(canvas, H, width, height):
    """The picture: ``canvas`` (H x W x 3 uint8) warped by ``H`` to ``width`` x ``height``."""
    return cv2.warpPerspective(canvas, H, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
