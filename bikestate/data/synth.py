"""SynthBikes: procedural side-view bicycles with all 22 DelftBikes parts and their states.

The real DelftBikes photos cannot be fetched where bikestate is built and tested, so the demo, the
tests and the benchmarks run on this generator. Its output has the exact DelftBikes input format
(``images/*.jpg`` + ``annotations.json`` keyed by file name, see DESIGN.md section 2), so every
later stage (validation, COCO conversion, split, registration) runs on it unchanged.

How a picture is made (:func:`render_bike`):

1. A bike is laid out in a canonical frame: wheel radius 1, back axle at the origin, facing
   +x, y pointing down, the ground at y = 1. Frame geometry (wheelbase, angles, tube lengths,
   frame style, rack) is sampled per image. Every part is a list of drawing primitives
   (polylines, filled polygons, circles) in that frame.
2. Every part draws a state from ``state_probs``. ``damaged`` parts are built from a broken
   variant of their geometry (bent rim and missing spokes, cracked lens, torn saddle, snapped
   lever...), ``absent`` parts keep the geometry of the intact part for their box but are not
   drawn, ``occluded`` parts are drawn and then covered by an occluder over >= 40% of their box.
3. The bike is scaled (a third of the image width up to slightly cropped at the border), mirrored
   when it faces left, placed, and drawn with OpenCV over a procedural background; then lighting,
   blur and noise are applied. Boxes are the bounds of the drawn primitives (of the would-be
   primitives for absent parts), clipped to the image.

``back_*`` / ``front_*`` name the bike's back and front, not the image's left and right: a bike
facing left has its front wheel on the left. Of the two grips, levers and pedals seen from the
side, ``front_*`` is the one nearer the bike's front.

Everything is drawn from one ``numpy.random.Generator``; :func:`generate_synthbikes` derives it
from ``(seed, image index)``, so images do not depend on generation order and a seed always gives
byte-identical JSON and identical pixels.
"""
import math
import os

import cv2
import numpy as np

from ..constants import PART_NAMES, STATE_ABSENT, STATE_DAMAGED, STATE_NAMES, STATE_OCCLUDED
from ..utils.errors import ConfigError
from ..utils.io import atomic_write_bytes, atomic_write_json

__all__ = ["DEFAULT_STATE_PROBS", "SYNTH_VERSION", "render_bike", "generate_synthbikes",
           "check_state_probs"]

# Version of the pictures: bump it whenever a change makes the same seed draw different images,
# so that cached SynthBikes datasets (bikestate.data.datasets) are regenerated.
SYNTH_VERSION = 1

# Shares of intact, damaged, absent, occluded parts (STATE_NAMES order), as in DelftBikes.
DEFAULT_STATE_PROBS = (0.60, 0.06, 0.20, 0.14)

# A part counts as occluded when occluders cover at least this fraction of its box.
MIN_OCCLUDED_COVERAGE = 0.40

# Parts overlap (the dress guard lies on the back wheel, levers under the grips), so an occluder
# also covers some visible neighbours >= 40%, which then count as occluded too. Per occluded
# part, about this fraction of the remaining visible parts is hit (measured on 300 images at the
# default shares); _sampling_probs draws fewer occluders up front so the final shares match.
_COLLATERAL_RATE = 0.6

_SHIFT = 4  # fractional bits of the OpenCV drawing calls: sub-pixel accurate anti-aliased lines
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


# ------------------------------------------------------------------------------------------------
# Small geometry helpers (canonical frame: y down, angles in degrees, clockwise on screen)
# ------------------------------------------------------------------------------------------------
def _unit(deg):
    a = math.radians(deg)
    return np.array([math.cos(a), math.sin(a)])


def _arc(center, radius, a0, a1, n=24):
    """Points of a circular arc from angle ``a0`` to ``a1`` (degrees), shape (n, 2)."""
    a = np.radians(np.linspace(a0, a1, n))
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], axis=1)


def _sector(center, r0, r1, a0, a1, n=16):
    """Closed polygon of the annulus sector r0..r1, a0..a1, shape (2n, 2)."""
    return np.concatenate([_arc(center, r1, a0, a1, n), _arc(center, r0, a1, a0, n)])


def _bezier(p0, p1, p2, n=10):
    """Quadratic Bezier curve through control point ``p1``, shape (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _rect(center, length, width, angle_deg, cut=0.25):
    """Rectangle with cut corners (a cheap rounded rectangle) along ``angle_deg``, shape (8, 2)."""
    u, v = _unit(angle_deg), _unit(angle_deg + 90)
    hl, hw = length / 2, width / 2
    c = min(hl, hw) * cut * 2
    local = [(-hl + c, -hw), (hl - c, -hw), (hl, -hw + c), (hl, hw - c),
             (hl - c, hw), (-hl + c, hw), (-hl, hw - c), (-hl, -hw + c)]
    return np.array([center + x * u + y * v for x, y in local])


def _rotate_about(points, pivot, deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    d = points - pivot
    return pivot + np.stack([d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c], axis=1)


def _jitter(rng, color, amount):
    return tuple(min(max(int(c + d), 0), 255)
                 for c, d in zip(color, rng.integers(-amount, amount + 1, 3)))


def _mix(a, b, t):
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _luma(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


# ------------------------------------------------------------------------------------------------
# Drawing primitives. Coordinates are canonical until _Placement maps them to pixels.
# ------------------------------------------------------------------------------------------------
class _Prim:
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


def _line(pts, thick, color):
    return _Prim("line", pts, color, thick)


def _closed(pts, thick, color):
    return _Prim("closed", pts, color, thick)


def _fill(pts, color, alpha=1.0):
    return _Prim("fill", pts, color, alpha=alpha)


def _circle(center, radius, color, thick=-1.0):
    return _Prim("circle", np.asarray(center, dtype=np.float64)[None], color, thick, radius)


def _segs(segments, thick, color):
    """Many separate 2-point lines in one call; ``segments`` has shape (n, 2, 2)."""
    return _Prim("segs", np.asarray(segments, dtype=np.float64).reshape(-1, 2), color, thick)


class _Placement:
    """Canonical -> pixel mapping: x' = tx + s * flip * x, y' = ty + s * y."""

    def __init__(self, scale, flip, tx, ty):
        self.scale, self.flip, self.tx, self.ty = scale, flip, tx, ty
        self._mul = np.array([scale * flip, scale])
        self._add = np.array([tx, ty])

    def points(self, pts):
        return pts * self._mul + self._add

    def px(self, length):
        return length * self.scale

    def thickness(self, t):
        return max(1, int(round(t * self.scale)))


def _prim_bounds(prim, place):
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


def _bounds(prims, place):
    b = np.array([_prim_bounds(p, place) for p in prims])
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


def _draw(img, prim, place):
    pts = prim.pixels(place)
    color = prim.color
    if prim.kind == "circle":
        c = tuple(int(v) for v in np.round(pts[0] * _ONE))
        r = int(round(place.px(prim.radius) * _ONE))
        t = -1 if prim.thick < 0 else place.thickness(prim.thick)
        cv2.circle(img, c, max(r, _ONE // 2), color, t, _AA, _SHIFT)
        return
    ipts = np.round(pts * _ONE).astype(np.int32)
    if prim.kind == "fill":
        if prim.alpha >= 1.0:
            cv2.fillPoly(img, [ipts], color, _AA, _SHIFT)
            return
        # Translucent fill (dress guard panel): blend only inside the polygon's bounding box.
        h, w = img.shape[:2]
        x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]
        layer = roi.copy()
        cv2.fillPoly(layer, [ipts - np.array([x0, y0], np.int32) * _ONE], color, _AA, _SHIFT)
        cv2.addWeighted(layer, prim.alpha, roi, 1 - prim.alpha, 0, dst=roi)
        return
    t = place.thickness(prim.thick)
    if prim.kind == "segs":
        cv2.polylines(img, list(ipts.reshape(-1, 2, 2)), False, color, t, _AA, _SHIFT)
    else:
        cv2.polylines(img, [ipts], prim.kind == "closed", color, t, _AA, _SHIFT)


# ------------------------------------------------------------------------------------------------
# The bike: canonical layout, colours, and one builder per part
# ------------------------------------------------------------------------------------------------
_FRAME_COLORS = [(25, 25, 28), (30, 70, 45), (30, 42, 95), (120, 120, 126), (225, 215, 185),
                 (170, 30, 35), (40, 95, 175), (105, 62, 35), (235, 235, 232), (115, 190, 170),
                 (60, 60, 64), (150, 40, 110), (210, 170, 40)]
_PANEL_COLORS = [(90, 90, 96), (40, 80, 160), (160, 40, 40), (40, 120, 70), (200, 180, 140),
                 (20, 20, 24)]
_BLACK = (28, 28, 30)
_RED_LENS = (225, 25, 25)
_AMBER = (255, 150, 20)
_FOAM = (235, 205, 120)  # inside of a torn saddle / grip


class _Layout:
    """Key points of one bike in the canonical frame and its colours (all sampled)."""

    def __init__(self, rng, background):
        u = rng.uniform
        self.wheelbase = u(2.85, 3.3)
        self.back_axle = np.array([0.0, 0.0])
        self.front_axle = np.array([self.wheelbase, 0.0])
        self.bb = np.array([u(1.2, 1.4), u(0.12, 0.24)])
        seat_angle = u(66, 75)
        self.seat_dir = -_unit(seat_angle)  # from the bottom bracket up to the saddle
        self.seat_top = self.bb + u(1.35, 1.7) * self.seat_dir
        head_angle = u(65, 72)
        self.head_dir = -_unit(head_angle)  # from the front axle up the fork
        self.head_bot = self.front_axle + u(1.12, 1.3) * self.head_dir
        self.head_top = self.head_bot + u(0.35, 0.55) * self.head_dir
        self.frame_style = rng.choice(["diamond", "step", "sloping", "mixte"], p=[.3, .35, .2, .15])
        self.saddle_at = self.seat_top + u(0.25, 0.6) * self.seat_dir
        stem = u(0.18, 0.35)
        self.stem_top = self.head_top + stem * self.head_dir + np.array([u(0.0, 0.12), 0.0])
        sweep, rise = u(0.4, 0.6), u(0.05, 0.18)
        self.grip_front = self.stem_top + np.array([-sweep, -rise])
        self.grip_back = self.stem_top + np.array([-sweep - u(0.18, 0.28), -rise + u(0.22, 0.3)])
        self.grip_len = u(0.32, 0.4)
        self.grip_dir = _unit(180 - u(5, 18))  # grips point backwards, slightly down
        self.crank_len = u(0.42, 0.5)
        crank = u(15, 62) * rng.choice([-1, 1])  # |cos| > 0.45: one pedal clearly in front
        self.crank_dir = _unit(crank)
        self.chainring_r = u(0.32, 0.42)
        self.sprocket_r = u(0.12, 0.17)
        self.tyre = u(0.09, 0.14)
        self.has_rack = rng.random() < 0.6
        self.rack_y = -u(1.22, 1.32)
        self.spokes = int(rng.choice([16, 18, 20]))  # per wheel side drawn; reads as 32-36 spokes

        # Colours: a frame colour, a trim colour for mudguards / guard / case, black plastics.
        self.frame = _jitter(rng, _FRAME_COLORS[rng.integers(len(_FRAME_COLORS))], 12)
        if abs(_luma(self.frame) - _luma(background)) < 55:  # keep the frame visible
            self.frame = _jitter(rng, _BLACK, 8) if _luma(background) > 110 else (228, 228, 228)
        self.trim = [self.frame, _jitter(rng, _BLACK, 8), _jitter(rng, (190, 190, 196), 12)][
            rng.choice(3, p=[.5, .3, .2])]
        self.metal = _jitter(rng, (195, 196, 202), 15)
        self.tyre_color = _jitter(rng, (38, 38, 40), 14)
        self.rim_color = _jitter(rng, (200, 200, 206), 20) if rng.random() < .7 else _jitter(
            rng, _BLACK, 8)
        self.spoke_color = _jitter(rng, (170, 172, 178), 20)
        self.dark = _jitter(rng, _BLACK, 8)
        self.saddle = [_jitter(rng, _BLACK, 8), _jitter(rng, (110, 65, 32), 15)][rng.integers(2)]
        self.grip = [_jitter(rng, _BLACK, 8), _jitter(rng, (110, 65, 32), 15),
                     _jitter(rng, (175, 135, 85), 15)][rng.integers(3)]
        self.panel = _jitter(rng, _PANEL_COLORS[rng.integers(len(_PANEL_COLORS))], 15)
        self.bell = _jitter(rng, (210, 210, 215), 12) if rng.random() < .7 else _jitter(
            rng, [(200, 40, 40), (40, 80, 200), (230, 200, 40), (40, 160, 80)][rng.integers(4)], 15)

        # Sizes, mounting angles and colours of single parts.
        self.tube = u(0.075, 0.11)
        self.kick_reach = u(0.35, 0.6)
        self.kick_color = [self.metal, self.dark][rng.integers(2)]
        self.lock_angle = math.degrees(math.atan2(self.seat_top[1], self.seat_top[0])) + u(-4, 4)
        self.lock_color = [_jitter(rng, _BLACK, 8),
                           _jitter(rng, (165, 165, 170), 10)][rng.integers(2)]
        # Bottle dynamo on the fork, a little behind it, its roller on the tyre.
        fork_angle = math.degrees(math.atan2(self.head_dir[1], self.head_dir[0]))
        self.dynamo_angle = fork_angle - u(18, 26)
        self.reflector_r = u(0.075, 0.09)
        self.bell_r = u(0.085, 0.1)
        self.saddle_len, self.saddle_h = u(0.62, 0.8), u(0.15, 0.2)
        self.springs = rng.random() < 0.6
        self.brake_color = [self.metal, self.dark][rng.integers(2)]
        self.rack = [self.metal, self.dark, self.frame][rng.integers(3)]
        self.front_lamp = _jitter(rng, [_BLACK, (200, 200, 205), self.frame][rng.integers(3)], 5)
        self.light_on_crown = rng.random() < 0.6


def _crack(rng, p0, p1, color, thick=0.018, steps=4):
    """A jagged dark line from p0 to p1: the shared 'broken' mark of damaged parts."""
    t = np.linspace(0, 1, steps + 1)[:, None]
    pts = p0 + t * (p1 - p0)
    normal = _unit(math.degrees(math.atan2(*(p1 - p0)[::-1])) + 90)
    pts[1:-1] += normal * rng.uniform(-1, 1, (steps - 1, 1)) * np.linalg.norm(p1 - p0) * 0.18
    return _line(pts, thick, color)


def _wheel(L, center, damaged, rng):
    """Tyre, rim, laced spokes and hub; damaged: bent ("taco") rim and missing spokes."""
    t = L.tyre
    r_rim = 1.0 - t
    n_spokes = L.spokes * 2
    if damaged:
        # A dent of 15-30% of the radius that the tyre follows.
        a0, width, depth = rng.uniform(0, 360), rng.uniform(25, 45), rng.uniform(0.15, 0.3)
        keep = rng.random(n_spokes) < 0.45  # many spokes missing
    else:
        a0, width, depth = 0.0, 1.0, 0.0
        keep = np.ones(n_spokes, bool)

    def ring(radius, angles):
        """Points at ``radius`` minus the dent, at ``angles`` (degrees), shape (n, 2)."""
        off = (angles - a0 + 180) % 360 - 180
        r = radius - depth * np.exp(-(off / width) ** 2)
        rad = np.radians(angles)
        return np.stack([center[0] + r * np.cos(rad), center[1] + r * np.sin(rad)], 1)

    if damaged:
        full = np.linspace(0, 360, 73)
        prims = [_closed(ring(1.0 - t / 2, full), t, L.tyre_color),
                 _closed(ring(r_rim, full), 0.035, L.rim_color)]
    else:
        prims = [_circle(center, 1.0 - t / 2, L.tyre_color, t),
                 _circle(center, r_rim, L.rim_color, 0.035)]
    hub_r = 0.08
    hub_angles = rng.uniform(0, 360) + np.arange(n_spokes) * 360.0 / n_spokes
    lace = np.where(np.arange(n_spokes) % 2 == 1, 22.0, -22.0)  # tangential lacing: spokes cross
    hub_pts = center + hub_r * np.stack([np.cos(np.radians(hub_angles)),
                                         np.sin(np.radians(hub_angles))], 1)
    segs = list(np.stack([hub_pts, ring(r_rim, hub_angles + lace)], 1)[keep])
    if damaged:  # a few snapped spokes hang from the hub
        for a in rng.uniform(0, 360, 3):
            p = center + hub_r * _unit(a)
            segs.append(np.array([p, p + rng.uniform(0.3, 0.5) * _unit(a + rng.uniform(30, 60))]))
    if segs:
        prims.append(_segs(np.array(segs), 0.016, L.spoke_color))
    prims.append(_circle(center, hub_r, L.metal))
    prims.append(_circle(center, hub_r * 0.45, L.dark))
    return prims


def _mudguard(L, center, a0, a1, damaged, rng):
    r, t = 1.11, 0.065
    if not damaged:
        return [_line(_arc(center, r, a0, a1, 20), t, L.trim)]
    # Broken off: the outer piece is torn loose and sticks out.
    brk = rng.uniform(0.4, 0.65)
    ab = a0 + brk * (a1 - a0)
    piece = _arc(center, r, ab + 4, a1, 12)
    piece = _rotate_about(piece, piece[0], rng.choice([-1, 1]) * rng.uniform(18, 30))
    return [_line(_arc(center, r, a0, ab - 2, 14), t, L.trim), _line(piece, t, L.trim),
            _crack(rng, piece[0], piece[0] + 0.12 * _unit(rng.uniform(0, 360)), L.dark, 0.02)]


def _dress_guard(L, damaged, rng):
    c = L.back_axle
    a0, a1, r0, r1 = -178, -100, 0.3, 0.97
    prims = []
    if not damaged:
        prims.append(_fill(_sector(c, r0, r1, a0, a1, 14), L.panel, alpha=0.55))
        prims.append(_closed(_sector(c, r0, r1, a0, a1, 14), 0.035, L.dark))
        strings = [[c + r0 * _unit(a), c + r1 * _unit(a)] for a in np.linspace(a0, a1, 7)[1:-1]]
        prims.append(_segs(strings, 0.018, L.dark))
        return prims
    # Torn: the panel ends in a ragged edge, the outline is broken, strings hang loose.
    cut = rng.uniform(-150, -125)
    ragged = np.array([c + r * _unit(cut + rng.uniform(-10, 10)) for r in np.linspace(r1, r0, 6)])
    poly = np.concatenate([_arc(c, r1, a1, cut, 8), ragged, _arc(c, r0, cut, a1, 6)])
    prims.append(_fill(poly, L.panel, alpha=0.55))
    prims.append(_line(np.concatenate([_arc(c, r1, a1, cut, 8), ragged]), 0.035, L.dark))
    loose = [[c + r1 * _unit(a), c + r1 * _unit(a) + rng.uniform(0.25, 0.45) * _unit(
        rng.uniform(60, 120))] for a in np.linspace(cut - 8, a0 + 5, 3)]
    prims.append(_segs(loose, 0.02, L.dark))
    prims.append(_line(_arc(c, r1, a0, a0 + 12, 4), 0.035, L.dark))
    return prims


def _chain_loop(L):
    """Chain path around sprocket (back axle) and chainring (bottom bracket), shape (n, 2)."""
    c1, c2, r1, r2 = L.back_axle, L.bb, L.sprocket_r + 0.02, L.chainring_r + 0.02
    d = c2 - c1
    dist = float(np.linalg.norm(d))
    base = math.degrees(math.atan2(d[1], d[0]))
    beta = math.degrees(math.asin((r2 - r1) / dist))
    up, down = base - 90 - beta, base + 90 + beta  # normals of the upper and lower runs
    top = [c1 + r1 * _unit(up), c2 + r2 * _unit(up)]
    bottom = [c2 + r2 * _unit(down), c1 + r1 * _unit(down)]
    return (np.array(top), _arc(c2, r2, up, down - 0 if down > up else down + 360, 12),
            np.array(bottom), _arc(c1, r1, down, up + 360, 8))


def _chain(L, damaged, rng):
    top, ring_arc, bottom, sprocket_arc = _chain_loop(L)
    if damaged:
        # Snapped: the lower run hangs down loose from the chainring.
        start = bottom[0]
        end = start + np.array([rng.uniform(-0.5, -0.2), rng.uniform(0.45, 0.7)])
        mid = (start + end) / 2 + np.array([rng.uniform(-0.15, 0.15), 0.05])
        path = np.concatenate([sprocket_arc[-3:], top, ring_arc])
        hanging = _bezier(start, mid, end, 8)
        pieces = [path, hanging]
    else:
        pieces = [np.concatenate([top, ring_arc, bottom, sprocket_arc])]
    prims = []
    for p in pieces:
        prims.append(_line(p, 0.055, (55, 55, 58)))
        # Link pattern: short light dashes along the chain.
        seg_len = np.linalg.norm(np.diff(p, axis=0), axis=1)
        s = np.concatenate([[0], np.cumsum(seg_len)])
        marks = np.arange(0.02, s[-1], 0.07)
        xs, ys = np.interp(marks, s, p[:, 0]), np.interp(marks, s, p[:, 1])
        q = np.stack([xs, ys], 1)
        if len(q) > 1:
            dash = [[q[i], q[i] + 0.6 * (q[i + 1] - q[i])] for i in range(len(q) - 1)]
            prims.append(_segs(dash, 0.022, (150, 150, 155)))
    return prims


def _gear_case(L, damaged, rng):
    """Half chain guard over the chainring top and the upper chain run."""
    top, _, _, _ = _chain_loop(L)
    rr = L.chainring_r
    back = top[0] + (top[0] - top[1]) * -0.1
    span = top[1] - back
    nrm = _unit(math.degrees(math.atan2(span[1], span[0])) - 90)
    upper = np.array([back + 0.1 * nrm, top[1] + 0.1 * nrm])
    outer = _arc(L.bb, rr + 0.1, math.degrees(math.atan2(nrm[1], nrm[0])), 15, 10)
    inner = _arc(L.bb, rr - 0.08, 15, -60, 6)
    lower = np.array([L.bb + (rr - 0.08) * _unit(-60) + np.array([-0.05, 0.0]),
                      back - 0.07 * nrm])
    poly = np.concatenate([upper[:1], outer, inner, lower])
    color = L.trim
    if not damaged:
        return [_fill(poly, color), _line(outer[2:-2] - 0.035 * (outer[2:-2] - L.bb), 0.02,
                                          _mix(color, (255, 255, 255), 0.35))]
    # Cracked: the back half is broken off and hangs down; a crack runs across what is left.
    keep = poly[:, 0] > back[0] + rng.uniform(0.35, 0.5) * (L.bb[0] - back[0])
    front = poly[keep]
    piece = np.array([back + 0.1 * nrm, back + 0.35 * span + 0.1 * nrm,
                      back + 0.35 * span - 0.07 * nrm, back - 0.07 * nrm])
    piece = _rotate_about(piece, piece[1], rng.uniform(25, 40))
    mid = front.mean(0)
    return [_fill(front, color), _fill(piece, color),
            _crack(rng, mid - np.array([0.1, 0.1]), mid + np.array([0.1, 0.12]),
                   _mix(color, (255, 255, 255), .6) if _luma(color) < 90 else _BLACK, 0.025)]


def _pedal(L, center, damaged, rng):
    if not damaged:
        return [_fill(_rect(center, 0.3, 0.1, 0, 0.3), L.dark),
                _fill(_rect(center + np.array([0.1, 0]), 0.06, 0.06, 0), _AMBER),
                _fill(_rect(center - np.array([0.1, 0]), 0.06, 0.06, 0), _AMBER)]
    # Broken: half the body is gone, the rest hangs at an angle from the spindle.
    ang = rng.uniform(45, 75) * rng.choice([-1, 1])
    stub = center + 0.08 * _unit(ang)
    return [_fill(_rect(stub, 0.16, 0.1, ang, 0.3), L.dark),
            _crack(rng, stub + 0.08 * _unit(ang), stub + 0.08 * _unit(ang) + 0.06 * _unit(ang + 90),
                   _FOAM, 0.02),
            _circle(center, 0.03, L.metal)]


def _kickstand(L, damaged, rng):
    mount = L.bb + 0.25 * (L.back_axle - L.bb) / np.linalg.norm(L.back_axle - L.bb)
    foot = np.array([mount[0] - L.kick_reach, 1.0 - 0.03])
    color = L.kick_color
    if not damaged:
        return [_line(np.array([mount, foot]), 0.06, color),
                _fill(_rect(foot + np.array([0, 0.0]), 0.14, 0.05, 0), L.dark)]
    # Bent: the leg kinks half way and the foot no longer reaches the ground.
    knee = mount + rng.uniform(0.45, 0.6) * (foot - mount)
    rest = np.linalg.norm(foot - knee)
    ang = math.degrees(math.atan2(*(foot - knee)[::-1])) + rng.choice([-1, 1]) * rng.uniform(45, 70)
    end = knee + rest * 0.8 * _unit(ang)
    return [_line(np.array([mount, knee, end]), 0.06, color),
            _crack(rng, knee - 0.05 * _unit(ang), knee + 0.06 * _unit(ang + 90), _BLACK, 0.02)]


def _lock(L, damaged, rng):
    """Ring lock on the seat stays, straddling the back wheel."""
    c = L.back_axle
    a = L.lock_angle
    body = _sector(c, 0.84, 1.06, a - 15, a + 15, 8)
    key = c + 0.99 * _unit(a + 9)
    lever = np.array([c + 0.9 * _unit(a - 8), c + 1.13 * _unit(a - 11)])
    color = L.lock_color
    if not damaged:
        return [_fill(body, color), _closed(body, 0.02, _mix(color, (255, 255, 255), 0.3)),
                _circle(key, 0.038, (215, 210, 160)), _circle(key, 0.015, _BLACK),
                _line(lever, 0.04, L.metal)]
    # Broken: the body is split, the outer half displaced, the key cylinder gone.
    inner = _sector(c, 0.84, 1.06, a - 15, a - 2, 5)
    outer = _rotate_about(_sector(c, 0.84, 1.06, a + 3, a + 15, 5), c + 1.06 * _unit(a + 15),
                          rng.uniform(20, 35))
    return [_fill(inner, color), _fill(outer, color), _circle(key, 0.04, (10, 10, 10)),
            _crack(rng, c + 0.84 * _unit(a + 1), c + 1.06 * _unit(a), (230, 230, 230), 0.022)]


def _dynamo(L, damaged, rng):
    c = L.front_axle
    axis = L.dynamo_angle  # the body points at the wheel centre, its roller on the sidewall
    center = c + 0.77 * _unit(axis)
    if not damaged:
        return [_fill(_rect(center, 0.26, 0.1, axis, 0.3), L.metal),
                _fill(_rect(center - 0.1 * _unit(axis), 0.07, 0.105, axis, 0.2), L.dark),
                _circle(center + 0.15 * _unit(axis), 0.04, L.dark)]
    # Broken: swung away from the tyre, roller missing, body cracked.
    tilt = axis + rng.choice([-1, 1]) * rng.uniform(50, 80)
    center = c + 0.68 * _unit(axis) + 0.08 * _unit(tilt)
    return [_fill(_rect(center, 0.2, 0.1, tilt, 0.3), L.metal),
            _crack(rng, center - 0.06 * _unit(tilt + 90), center + 0.07 * _unit(tilt + 60),
                   _BLACK, 0.022)]


def _lamp(L, center, facing, lens_color, housing, damaged, rng, size=(0.22, 0.15)):
    """A lamp: housing plus a lens on the face pointing along ``facing`` (degrees)."""
    length, width = size
    if not damaged:
        lens = _rect(center + (length / 2 - 0.02) * _unit(facing), 0.05, width * 1.05, facing, 0.4)
        return [_fill(_rect(center, length, width, facing, 0.35), housing),
                _fill(lens, lens_color),
                _circle(center + (length / 2 - 0.02) * _unit(facing) - 0.02 * _unit(facing + 90),
                        0.018, (255, 255, 255))]
    # Cracked and hanging: tilted down, lens dark and shattered, a corner missing.
    tilt = facing + rng.uniform(30, 50)
    body = _rect(center, length, width, tilt, 0.35)[:6]
    face = center + (length / 2 - 0.02) * _unit(tilt)
    dark_lens = _mix(lens_color, (40, 40, 40), 0.6)
    return [_fill(body, housing), _fill(_rect(face, 0.05, width, tilt, 0.4), dark_lens),
            _crack(rng, face - width / 2 * _unit(tilt + 90), face + width / 2 * _unit(tilt + 90),
                   (245, 245, 245), 0.02),
            _crack(rng, center, face + 0.04 * _unit(tilt + 90), (245, 245, 245), 0.018)]


def _reflector(L, center, damaged, rng):
    r = L.reflector_r
    if not damaged:
        return [_circle(center, r, (205, 25, 30)), _circle(center, r * 0.62, (140, 10, 15), 0.02),
                _circle(center - np.array([r * .3, r * .3]), r * 0.22, (255, 140, 140))]
    # Cracked: half of it broken away, a crack across the rest.
    a = rng.uniform(0, 360)
    half = _arc(center, r, a, a + 180, 10)
    return [_fill(half, (205, 25, 30)),
            _crack(rng, center + r * 0.9 * _unit(a + 60), center, (250, 220, 220), 0.018)]


def _saddle(L, damaged, rng):
    c = L.saddle_at + np.array([0.0, -0.04])
    ln, h = L.saddle_len, L.saddle_h
    shape = np.array([(-0.45, -0.25), (-0.38, -1.0), (-0.1, -1.05), (0.25, -0.65), (0.55, -0.5),
                      (0.55, -0.2), (0.2, 0.05), (-0.4, 0.05)]) * [ln, h] + c
    prims = [_line(np.array([L.seat_top, L.saddle_at]), 0.07, L.metal)]
    spring = c + np.array([-0.3 * ln, 0.02])
    zig = np.array([spring + np.array([0.04 * ((-1) ** k), 0.035 * k]) for k in range(5)])
    if L.springs:
        prims.append(_line(zig, 0.025, L.metal))
    if not damaged:
        prims.append(_fill(shape, L.saddle))
        prims.append(_line(shape[1:4] + [0, 0.02], 0.018, _mix(L.saddle, (255, 255, 255), 0.25)))
        return prims
    # Torn: the cover is ripped open at the top (foam shows) and the saddle is tilted.
    tilt = rng.choice([-1, 1]) * rng.uniform(12, 22)
    shape = _rotate_about(shape, c, tilt)
    prims.append(_fill(shape, L.saddle))
    tear = np.array([(-0.3, -0.95), (-0.15, -0.55), (0.0, -0.9), (0.12, -0.5), (0.25, -0.7),
                     (0.1, -0.25), (-0.2, -0.3)]) * [ln, h] + c
    prims.append(_fill(_rotate_about(tear, c, tilt), _FOAM))
    return prims


def _steer(L, damaged, rng):
    stem = [L.head_top, L.head_top + 0.6 * (L.stem_top - L.head_top), L.stem_top]
    front_bar = _bezier(L.stem_top, L.stem_top + np.array([0.1, -0.12]), L.grip_front, 8)
    back_bar = _bezier(L.stem_top, L.stem_top + np.array([0.08, 0.03]), L.grip_back, 8)
    if damaged:
        # Bent bar: one side kinked down / forward.
        side = back_bar if rng.random() < 0.5 else front_bar
        side[4:] = _rotate_about(side[4:], side[4], rng.choice([-1, 1]) * rng.uniform(25, 40))
        return [_line(np.array(stem), 0.075, L.metal), _line(front_bar, 0.055, L.metal),
                _line(back_bar, 0.055, L.metal),
                _crack(rng, side[4] - [0.05, 0.05], side[4] + [0.05, 0.06], _BLACK, 0.022)]
    return [_line(np.array(stem), 0.075, L.metal), _line(front_bar, 0.055, L.metal),
            _line(back_bar, 0.055, L.metal)]


def _grip_end(L, which):
    return L.grip_front if which == "front" else L.grip_back


def _handle(L, which, damaged, rng):
    p0 = _grip_end(L, which)
    p1 = p0 + L.grip_len * L.grip_dir
    if not damaged:
        return [_line(np.array([p0, p1]), 0.11, L.grip),
                _line(np.array([p1 - 0.02 * L.grip_dir, p1]), 0.12, _mix(L.grip, (0, 0, 0), .4))]
    # Torn grip: half the rubber is gone, the bare bar shows, the end is frayed.
    mid = p0 + 0.5 * L.grip_len * L.grip_dir
    fray = np.array([mid, mid + 0.05 * _unit(100), mid + 0.03 * L.grip_dir,
                     mid + 0.06 * _unit(250)])
    return [_line(np.array([p0, mid]), 0.11, L.grip), _line(np.array([mid, p1]), 0.05, L.metal),
            _line(fray, 0.025, _FOAM)]


def _hand_brake(L, which, damaged, rng):
    """Lever under the grip: a clamp at the bar and a blade angled a little below the grip."""
    grip_angle = math.degrees(math.atan2(L.grip_dir[1], L.grip_dir[0]))
    p0 = _grip_end(L, which) + np.array([0.03, 0.06])
    mid = p0 + 0.15 * _unit(grip_angle - 24)
    end = mid + 0.17 * _unit(grip_angle - 6)
    clamp = _circle(p0, 0.04, L.brake_color)
    if not damaged:
        return [clamp, _line(np.array([p0, mid, end]), 0.04, L.brake_color)]
    # Snapped lever: a short stub, the broken blade points down.
    brk = p0 + 0.55 * (mid - p0)
    piece = brk + 0.15 * _unit(rng.uniform(75, 110))
    return [clamp, _line(np.array([p0, brk]), 0.04, L.brake_color),
            _line(np.array([brk + 0.03 * _unit(90), piece]), 0.04, L.brake_color)]


def _bell(L, damaged, rng):
    on_bar = _bezier(L.stem_top, L.stem_top + np.array([0.1, -0.12]), L.grip_front, 8)[3]
    r = L.bell_r
    c = on_bar + np.array([0.0, -r * 0.7])
    if not damaged:
        return [_circle(c, r, L.bell), _circle(c, r * 0.8, _mix(L.bell, (0, 0, 0), 0.35), 0.012),
                _circle(c - np.array([r * .3, r * .35]), r * 0.25, (255, 255, 255)),
                _line(np.array([c + [r * 0.6, r * 0.5], c + [r * 1.3, r * 0.9]]), 0.025, L.metal)]
    # Dented and cracked dome, lever gone.
    dome = _arc(c, r, 180, 360, 10)
    dome = np.concatenate([dome, [c + np.array([r * 0.9, r * 0.2]), c + np.array([0, r * 0.35]),
                                  c + np.array([-r, r * 0.5])]])
    return [_fill(dome, _mix(L.bell, (90, 70, 50), 0.35)),
            _crack(rng, c + np.array([-r * 0.5, -r * 0.8]), c + np.array([r * 0.4, r * 0.3]),
                   _BLACK, 0.02)]


def _frame(L):
    """Context (not a part): tubes, fork, crank arms, chainring, rack, stays."""
    c = L.frame
    t = L.tube
    A, B, S, Hb, Ht = L.back_axle, L.bb, L.seat_top, L.head_bot, L.head_top
    prims = [_line(np.array([A, B]), t * 0.75, c),            # chain stay
             _line(np.array([A, S - 0.06 * L.seat_dir]), t * 0.7, c),  # seat stay
             _line(np.array([B, S]), t, c),                   # seat tube
             _line(np.array([Hb, Ht]), t * 1.25, c)]          # head tube
    fork = _bezier(L.front_axle, L.front_axle + 0.5 * (Hb - L.front_axle) + [0.08, 0], Hb, 6)
    prims.append(_line(fork, t * 0.85, c))
    style = L.frame_style
    if style == "diamond":
        prims += [_line(np.array([Ht + 0.05 * L.head_dir, S + 0.06 * (B - S)]), t, c),
                  _line(np.array([Hb - 0.05 * L.head_dir, B]), t * 1.1, c)]
    elif style == "sloping":
        prims += [_line(np.array([Ht, B + 0.7 * (S - B)]), t, c),
                  _line(np.array([Hb, B]), t * 1.1, c)]
    else:  # step-through: a low curved down tube, "mixte" adds a second one
        top = Hb + 0.55 * (Ht - Hb)
        prims.append(_line(_bezier(top, np.array([B[0] + 0.35, B[1] - 0.15]), B, 10), t * 1.15, c))
        if style == "mixte":
            prims.append(_line(_bezier(Ht, np.array([B[0] + 0.5, B[1] - 0.75]),
                                       B + 0.45 * (S - B), 10), t * 0.9, c))
    if L.has_rack:
        back_end = np.array([-1.08, L.rack_y])
        front_end = S + 0.1 * (A - S) + np.array([0.0, 0.0])
        prims += [_line(np.array([front_end, [front_end[0], L.rack_y], back_end]), 0.045, L.rack),
                  _line(np.array([[-0.85, L.rack_y], A]), 0.035, L.rack),
                  _line(np.array([[-0.35, L.rack_y], A]), 0.035, L.rack)]
    return prims


def _crank(L, end):
    return [_line(np.array([L.bb, end]), 0.07, L.metal), _circle(end, 0.03, L.dark)]


class _Bike:
    """All parts of one bike: ``parts[name] = (prims, z)``, ``context = [(prims, z)]``."""

    def __init__(self, rng, states, background):
        L = self.layout = _Layout(rng, background)
        u = rng.uniform
        self.states = states
        pedal_a = L.bb + L.crank_len * L.crank_dir
        pedal_b = L.bb - L.crank_len * L.crank_dir
        front_p, back_p = (pedal_a, pedal_b) if pedal_a[0] > pedal_b[0] else (pedal_b, pedal_a)
        # The near-side crank (drawn over the chainring) is the one at crank_dir.
        near_is_front = front_p is pedal_a

        if L.has_rack:
            back_light_at = np.array([-1.12, L.rack_y + 0.09])
        else:
            back_light_at = L.back_axle + 1.22 * _unit(-160)
        reflector_at = L.back_axle + (1.11 + L.reflector_r + 0.03) * _unit(u(-192, -180))
        if L.light_on_crown:
            front_light_at = L.head_bot + np.array([0.26, 0.02])
        else:
            front_light_at = L.front_axle + 0.58 * L.head_dir + np.array([0.22, 0.0])

        dmg = {n: states[n] == STATE_DAMAGED for n in PART_NAMES}
        build = {
            "back_wheel": (lambda d: _wheel(L, L.back_axle, d, rng), 2),
            "front_wheel": (lambda d: _wheel(L, L.front_axle, d, rng), 2),
            "dress_guard": (lambda d: _dress_guard(L, d, rng), 3),
            "back_mudguard": (lambda d: _mudguard(L, L.back_axle, -205, -84, d, rng), 4),
            "front_mudguard": (lambda d: _mudguard(L, L.front_axle, -165, -15, d, rng), 4),
            "kickstand": (lambda d: _kickstand(L, d, rng), 6),
            "chain": (lambda d: _chain(L, d, rng), 8),
            "gear_case": (lambda d: _gear_case(L, d, rng), 9),
            "front_pedal": (lambda d: _pedal(L, front_p, d, rng), 10 if near_is_front else 1),
            "back_pedal": (lambda d: _pedal(L, back_p, d, rng), 1 if near_is_front else 10),
            "lock": (lambda d: _lock(L, d, rng), 11),
            "dynamo": (lambda d: _dynamo(L, d, rng), 11),
            "front_light": (lambda d: _lamp(L, front_light_at, 0, (255, 246, 190), L.front_lamp, d,
                                            rng, (0.27, 0.18)), 11),
            "back_light": (lambda d: _lamp(L, back_light_at, 180, _RED_LENS, _BLACK, d, rng,
                                           (0.19, 0.11)), 11),
            "back_reflector": (lambda d: _reflector(L, reflector_at, d, rng), 11),
            "saddle": (lambda d: _saddle(L, d, rng), 12),
            "steer": (lambda d: _steer(L, d, rng), 12),
            "front_handle": (lambda d: _handle(L, "front", d, rng), 13),
            "back_handle": (lambda d: _handle(L, "back", d, rng), 13),
            "front_handbreak": (lambda d: _hand_brake(L, "front", d, rng), 14),
            "back_hand_break": (lambda d: _hand_brake(L, "back", d, rng), 14),
            "bell": (lambda d: _bell(L, d, rng), 14),
        }
        self.parts = {}
        for name in PART_NAMES:
            fn, z = build[name]
            self.parts[name] = (fn(dmg[name]), z)
        near, far = (front_p, back_p) if near_is_front else (back_p, front_p)
        self.context = [(_crank(L, far), 1), (_frame(L), 5),
                        ([_circle(L.bb, L.chainring_r, (90, 90, 95)),
                          _circle(L.bb, L.chainring_r - 0.05, L.metal, 0.03),
                          _circle(L.bb, 0.07, L.dark)], 7),
                        ([_circle(L.back_axle, L.sprocket_r, (90, 90, 95))], 7),
                        (_crank(L, near), 10)]
        if states["dynamo"] != STATE_ABSENT and states["front_light"] != STATE_ABSENT:
            wire = _bezier(L.front_axle + 0.85 * _unit(L.dynamo_angle),
                           L.head_bot + np.array([0.05, 0.3]), front_light_at, 8)
            self.context.append(([_line(wire, 0.015, _BLACK)], 11))

    def bounds(self, place):
        prims = [p for prims, _ in self.parts.values() for p in prims]
        prims += [p for prims, _ in self.context for p in prims]
        return _bounds(prims, place)

    def draw(self, img, place):
        layers = [(z, i, prims) for i, (prims, z) in enumerate(self.context)]
        for i, name in enumerate(PART_NAMES):
            prims, z = self.parts[name]
            if self.states[name] != STATE_ABSENT:
                layers.append((z, 100 + i, prims))
        for _, _, prims in sorted(layers, key=lambda t: (t[0], t[1])):
            for p in prims:
                _draw(img, p, place)


# ------------------------------------------------------------------------------------------------
# Background, occluders, photometric effects
# ------------------------------------------------------------------------------------------------
def _background_palette(rng):
    """Muted wall and floor colours, float32 RGB: (wall top, wall bottom, floor top, bottom)."""
    wall = rng.integers(110, 236, 3).astype(np.float32)
    wall = wall * 0.6 + wall.mean() * 0.4
    wall2 = np.clip(wall + rng.uniform(-40, 40, 3), 0, 255)
    floor = np.clip(wall * rng.uniform(0.55, 0.9) + rng.uniform(-15, 15, 3), 0, 255)
    floor2 = np.clip(floor + rng.uniform(-30, 30, 3), 0, 255)
    return tuple(c.astype(np.float32) for c in (wall, wall2, floor, floor2))


def _background(rng, palette, width, height, ground_y):
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
            cv2.circle(img, (int(x), int(y)), int(size / 2), color, -1, _AA)
        elif shape < 0.8:
            pts = (np.array([x, y]) + rng.uniform(-size, size, (5, 2))).astype(np.int32)
            cv2.fillPoly(img, [cv2.convexHull(pts)], color, _AA)
        else:
            cv2.rectangle(img, (int(x), 0), (int(x + size * 0.15), height), color, -1)
    return img


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
        return _rotate_about(np.array(pts, float), c, ang)
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
    cv2.fillPoly(mask, [np.round(poly * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)


def _place_occluders(rng, boxes, states, width, height):
    """Choose one occluder per occluded part, keeping collateral cover of other parts low.

    Args:
        boxes: (22, 4) pixel boxes (x0, y0, x1, y1) clipped to the image.
        states: 22 ints.
    Returns:
        (polygons, mask): pixel polygons and their union as an H x W uint8 0/1 mask.
    """
    ibox = _int_boxes(boxes, width, height)
    mask = np.zeros((height, width), np.uint8)
    cov = np.zeros(len(ibox))
    polys = []
    # Visible parts that are not meant to be occluded: covering them would change their state.
    bystanders = [j for j, s in enumerate(states) if s not in (STATE_ABSENT, STATE_OCCLUDED)]
    for i in [i for i, s in enumerate(states) if s == STATE_OCCLUDED]:
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


def _draw_occluders(rng, img, polys):
    """Paint occluders as textured objects (cardboard, cloth, plants, tape) over the bike."""
    for poly in polys:
        ipoly = np.round(poly * _ONE).astype(np.int32)
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
        cv2.fillPoly(local, [ipoly - np.array([x0, y0], np.int32) * _ONE], 1, cv2.LINE_8, _SHIFT)
        roi = img[y0:y1, x0:x1]
        roi[local > 0] = tex[local > 0]
        edge = tuple(int(v) for v in base * 0.55)
        cv2.polylines(img, [ipoly], True, edge, 1, _AA, _SHIFT)


def _photometric(rng, img):
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


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------
def check_state_probs(state_probs):
    """Validate 4 non-negative numbers summing to ~1; return them normalised as a tuple."""
    try:
        probs = np.asarray([float(p) for p in state_probs], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"state probabilities must be 4 numbers "
                          f"({', '.join(STATE_NAMES)}), got {state_probs!r}") from None
    if probs.shape != (len(STATE_NAMES),) or not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ConfigError(f"state probabilities must be {len(STATE_NAMES)} non-negative numbers "
                          f"({', '.join(STATE_NAMES)}), got {list(state_probs)}")
    if abs(probs.sum() - 1.0) > 0.02:
        raise ConfigError(f"state probabilities must sum to 1, got {list(state_probs)} "
                          f"(sum {probs.sum():.3f})")
    return tuple(float(p) for p in probs / probs.sum())


def _sampling_probs(probs):
    """Per-part sampling shares that give ``probs`` once collateral occlusion is counted.

    With q the sampled occluded share, a the absent share and k = _COLLATERAL_RATE, the final
    occluded share is about q + (1 - a - q) * k * q; solve it for q = probs[occluded] and give
    intact and damaged the freed share in their own proportion.
    """
    intact, damaged, absent, occluded = probs
    if intact + damaged <= 0 or occluded <= 0:
        return probs
    k = _COLLATERAL_RATE
    b = 1 + k * (1 - absent)
    q = (b - math.sqrt(max(b * b - 4 * k * occluded, 0.0))) / (2 * k)
    r = (1 - absent - q) / (intact + damaged)
    return (intact * r, damaged * r, absent, q)


def render_bike(rng, width, height, state_probs=DEFAULT_STATE_PROBS, return_occlusion=False):
    """Draw one SynthBikes picture.

    Args:
        rng (numpy.random.Generator): the only source of randomness.
        width, height (int): image size in pixels.
        state_probs: shares of intact, damaged, absent, occluded parts (STATE_NAMES order).
        return_occlusion (bool): also return the occluder mask (for tests and debugging).

    Returns:
        image (np.ndarray): H x W x 3 uint8, RGB.
        parts (dict): part name -> {"box": (left, top, width, height) floats in pixels, clipped
            to the image, "state": int}, for all 22 PART_NAMES in that order.
        occlusion (np.ndarray, only with ``return_occlusion``): H x W bool, True where an
            occluder was painted.
    """
    probs = check_state_probs(state_probs)
    width, height = int(width), int(height)
    sampling = _sampling_probs(probs)
    states = {n: int(s) for n, s in zip(PART_NAMES,
                                        rng.choice(4, size=len(PART_NAMES), p=sampling))}
    palette = _background_palette(rng)
    bike = _Bike(rng, states, background=(palette[0] + palette[1]) / 2)

    place, visible = _place_bike(rng, bike, width, height)
    img = _background(rng, palette, width, height, ground_y=place.ty + place.scale * 1.0)
    bike.draw(img, place)

    state_list = [states[n] for n in PART_NAMES]
    polys, mask, cov = _place_occluders(rng, visible, state_list, width, height)
    if polys:
        _draw_occluders(rng, img, polys)
        # A part that the occluders happen to cover as much as an occluded one is occluded too.
        for i, name in enumerate(PART_NAMES):
            if states[name] != STATE_ABSENT and cov[i] >= MIN_OCCLUDED_COVERAGE:
                states[name] = STATE_OCCLUDED
    img = _photometric(rng, img)

    parts = {}
    for i, name in enumerate(PART_NAMES):
        x0, y0, x1, y1 = visible[i]
        parts[name] = {"box": (round(float(x0), 1), round(float(y0), 1),
                               round(float(x1 - x0), 1), round(float(y1 - y0), 1)),
                       "state": states[name]}
    if return_occlusion:
        return img, parts, mask.astype(bool)
    return img, parts


def _place_bike(rng, bike, width, height):
    """Scale, mirror and position the bike; return (placement, (22, 4) clipped part boxes).

    The bike spans from about a third of the image width up to slightly more than the image
    (cropped at the border), but every part keeps at least 60% of its box inside the image: a
    part cut off entirely would leave an empty box behind.
    """
    # Canonical bounds, measured at a large scale so minimum line widths do not inflate them.
    ref = 100.0
    bx0, by0, bx1, by1 = (v / ref for v in bike.bounds(_Placement(ref, 1, 0.0, 0.0)))
    bw, bh = bx1 - bx0, by1 - by0
    frac = rng.uniform(0.36, 1.04)
    scale = min(frac * width / bw, 0.97 * height / bh)
    flip = 1 if rng.random() < 0.5 else -1
    pw, ph = bw * scale, bh * scale
    over_x, over_y = 0.04 * pw, 0.03 * ph
    left = rng.uniform(min(-over_x, width - pw), max(width - pw + over_x, -over_x))
    top = rng.uniform(min(-over_y, height - ph), max(height - ph + over_y, -over_y))
    for attempt in range(3):
        if attempt == 1:  # a part mostly cut off: pull the bike inside the image
            left = float(np.clip(left, 0, max(width - pw, 0)))
            top = float(np.clip(top, 0, max(height - ph, 0)))
        elif attempt == 2:  # still cut off: the bike is larger than the image, shrink it
            scale = 0.98 * min(width / bw, height / bh)
            pw, ph = bw * scale, bh * scale
            left, top = (width - pw) / 2, (height - ph) / 2
        # (left, top) of the bike's bounds in pixels -> translation of the canonical origin.
        tx = left - scale * bx0 if flip == 1 else left + scale * bx1
        place = _Placement(scale, flip, tx, top - scale * by0)
        raw = np.array([_bounds(bike.parts[n][0], place) for n in PART_NAMES])
        visible = _clip_boxes(raw, width, height)
        area = (raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1])
        vis_area = (visible[:, 2] - visible[:, 0]) * (visible[:, 3] - visible[:, 1])
        if np.all(vis_area >= 0.6 * area):
            break
    return place, visible


def _clip_boxes(boxes, width, height):
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out


def _image_name(seed, index):
    return f"synth_s{seed}_{index:06d}.jpg"


def generate_synthbikes(out_dir, num_images, seed, image_size=(640, 480), state_probs=None,
                        show_progress=True):
    """Write ``num_images`` SynthBikes pictures and their DelftBikes-format annotations.

    Args:
        out_dir (str): output folder; images go to ``out_dir/images/``.
        num_images (int): number of images (> 0).
        seed (int): non-negative; image ``i`` is drawn from ``default_rng([seed, i])``, so the
            result does not depend on the order of generation and file names never collide
            across seeds (``synth_s{seed}_{i:06d}.jpg``).
        image_size: (width, height) in pixels.
        state_probs: shares of intact, damaged, absent, occluded; ``None`` = DEFAULT_STATE_PROBS.
        show_progress (bool): show a tqdm progress bar.

    Returns:
        str: path of ``out_dir/annotations.json``, written atomically after all images.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) \
            or num_images <= 0:
        raise ConfigError(f"number of images must be a positive integer, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ConfigError(f"image size must be (width, height), got {image_size!r}") from None
    if width < 64 or height < 48:
        raise ConfigError(f"image size must be at least 64x48, got {width}x{height}")
    probs = check_state_probs(DEFAULT_STATE_PROBS if state_probs is None else state_probs)

    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    indices = range(int(num_images))
    if show_progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="SynthBikes", unit="img")
    annotations = {}
    for i in indices:
        rng = np.random.default_rng([int(seed), i])
        img, parts = render_bike(rng, width, height, probs)
        quality = int(rng.integers(60, 96))
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover  (OpenCV always encodes uint8 BGR)
            raise RuntimeError("OpenCV could not encode a JPEG")
        name = _image_name(int(seed), i)
        atomic_write_bytes(buf.tobytes(), os.path.join(image_dir, name))
        annotations[name] = _record(width, height, parts)
    json_path = os.path.join(out_dir, "annotations.json")
    atomic_write_json(annotations, json_path)
    return json_path


def _record(width, height, parts):
    """One image's DelftBikes record."""
    out = {}
    for name in PART_NAMES:
        left, top, w, h = parts[name]["box"]
        state = parts[name]["state"]
        out[name] = {
            "part_name": name,
            "absolute_bounding_box": {"left": left, "top": top, "width": w, "height": h},
            "object_state": STATE_NAMES[state],
            "object_state_class": state,
            "trust": 1.0,
        }
    return {"image": {"height": height, "width": width, "channels": 3}, "parts": out}
