"""The bike: a sampled canonical layout with its colours, and one builder per DelftBikes part.

Every builder returns the part's drawing primitives; ``damaged=True`` gives a broken variant of
the geometry (bent rim, torn saddle, snapped lever...). ``back_*`` / ``front_*`` name the bike's
back and front, not the image's left and right.
"""
import math

import numpy as np

from ..constants import PART_NAMES, STATE_ABSENT, STATE_DAMAGED
from .accessories import build_accessories
from .appearance import restyle, shade
from .drawing import (
    circle,
    closed_polyline,
    draw_prim,
    jitter,
    luma,
    mix,
    polygon,
    polyline,
    segments,
    union_bounds,
)
from .geometry import arc, bezier, rect, rotate_about, sector, unit
from .mounts import build_mounts

__all__ = ["Bike"]

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
    """Key points of one bike in the canonical frame and its colours (all sampled).

    ``style`` "v2" then gives the bike a type (city, mountain, folding, BMX, longtail) and
    realistic colours (:func:`.appearance.restyle`); v1 bikes are all city bikes.
    """

    def __init__(self, rng, background, style="v1"):
        u = rng.uniform
        self.wheelbase = u(2.85, 3.3)
        self.back_axle = np.array([0.0, 0.0])
        self.front_axle = np.array([self.wheelbase, 0.0])
        self.bb = np.array([u(1.2, 1.4), u(0.12, 0.24)])
        seat_angle = u(66, 75)
        self.seat_dir = -unit(seat_angle)  # from the bottom bracket up to the saddle
        self.seat_top = self.bb + u(1.35, 1.7) * self.seat_dir
        head_angle = u(65, 72)
        self.head_dir = -unit(head_angle)  # from the front axle up the fork
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
        self.grip_dir = unit(180 - u(5, 18))  # grips point backwards, slightly down
        self.crank_len = u(0.42, 0.5)
        crank = u(15, 62) * rng.choice([-1, 1])  # |cos| > 0.45: one pedal clearly in front
        self.crank_dir = unit(crank)
        self.chainring_r = u(0.32, 0.42)
        self.sprocket_r = u(0.12, 0.17)
        self.tyre = u(0.09, 0.14)
        self.has_rack = rng.random() < 0.6
        self.rack_y = -u(1.22, 1.32)
        self.spokes = int(rng.choice([16, 18, 20]))  # per wheel side drawn; reads as 32-36 spokes

        # Colours: a frame colour, a trim colour for mudguards / guard / case, black plastics.
        self.frame = jitter(rng, _FRAME_COLORS[rng.integers(len(_FRAME_COLORS))], 12)
        if abs(luma(self.frame) - luma(background)) < 55:  # keep the frame visible
            self.frame = jitter(rng, _BLACK, 8) if luma(background) > 110 else (228, 228, 228)
        self.trim = [self.frame, jitter(rng, _BLACK, 8), jitter(rng, (190, 190, 196), 12)][
            rng.choice(3, p=[.5, .3, .2])]
        self.metal = jitter(rng, (195, 196, 202), 15)
        self.tyre_color = jitter(rng, (38, 38, 40), 14)
        self.rim_color = jitter(rng, (200, 200, 206), 20) if rng.random() < .7 else jitter(
            rng, _BLACK, 8)
        self.spoke_color = jitter(rng, (170, 172, 178), 20)
        self.dark = jitter(rng, _BLACK, 8)
        self.saddle = [jitter(rng, _BLACK, 8), jitter(rng, (110, 65, 32), 15)][rng.integers(2)]
        self.grip = [jitter(rng, _BLACK, 8), jitter(rng, (110, 65, 32), 15),
                     jitter(rng, (175, 135, 85), 15)][rng.integers(3)]
        self.panel = jitter(rng, _PANEL_COLORS[rng.integers(len(_PANEL_COLORS))], 15)
        self.bell = jitter(rng, (210, 210, 215), 12) if rng.random() < .7 else jitter(
            rng, [(200, 40, 40), (40, 80, 200), (230, 200, 40), (40, 160, 80)][rng.integers(4)], 15)

        # Sizes, mounting angles and colours of single parts.
        self.tube = u(0.075, 0.11)
        self.kick_reach = u(0.35, 0.6)
        self.kick_color = [self.metal, self.dark][rng.integers(2)]
        self.lock_angle = math.degrees(math.atan2(self.seat_top[1], self.seat_top[0])) + u(-4, 4)
        self.lock_color = [jitter(rng, _BLACK, 8),
                           jitter(rng, (165, 165, 170), 10)][rng.integers(2)]
        # Bottle dynamo on the fork, a little behind it, its roller on the tyre.
        fork_angle = math.degrees(math.atan2(self.head_dir[1], self.head_dir[0]))
        self.dynamo_angle = fork_angle - u(18, 26)
        self.reflector_r = u(0.075, 0.09)
        self.bell_r = u(0.085, 0.1)
        self.saddle_len, self.saddle_h = u(0.62, 0.8), u(0.15, 0.2)
        self.springs = rng.random() < 0.6
        self.brake_color = [self.metal, self.dark][rng.integers(2)]
        self.rack = [self.metal, self.dark, self.frame][rng.integers(3)]
        self.front_lamp = jitter(rng, [_BLACK, (200, 200, 205), self.frame][rng.integers(3)], 5)
        self.light_on_crown = rng.random() < 0.6
        self.style = style
        self.kind = "city"
        if style == "v2":
            restyle(self, rng)


def _crack(rng, p0, p1, color, thick=0.018, steps=4):
    """A jagged dark line from p0 to p1: the shared 'broken' mark of damaged parts."""
    t = np.linspace(0, 1, steps + 1)[:, None]
    pts = p0 + t * (p1 - p0)
    normal = unit(math.degrees(math.atan2(*(p1 - p0)[::-1])) + 90)
    pts[1:-1] += normal * rng.uniform(-1, 1, (steps - 1, 1)) * np.linalg.norm(p1 - p0) * 0.18
    return polyline(pts, thick, color)


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
        prims = [closed_polyline(ring(1.0 - t / 2, full), t, L.tyre_color),
                 closed_polyline(ring(r_rim, full), 0.035, L.rim_color)]
    else:
        prims = [circle(center, 1.0 - t / 2, L.tyre_color, t),
                 circle(center, r_rim, L.rim_color, 0.035)]
    hub_r = 0.08
    hub_angles = rng.uniform(0, 360) + np.arange(n_spokes) * 360.0 / n_spokes
    lace = np.where(np.arange(n_spokes) % 2 == 1, 22.0, -22.0)  # tangential lacing: spokes cross
    hub_pts = center + hub_r * np.stack([np.cos(np.radians(hub_angles)),
                                         np.sin(np.radians(hub_angles))], 1)
    segs = list(np.stack([hub_pts, ring(r_rim, hub_angles + lace)], 1)[keep])
    if damaged:  # a few snapped spokes hang from the hub
        for a in rng.uniform(0, 360, 3):
            p = center + hub_r * unit(a)
            segs.append(np.array([p, p + rng.uniform(0.3, 0.5) * unit(a + rng.uniform(30, 60))]))
    if L.style == "v2":
        prims[1:1] = _tread(L, ring, t)
    if segs:
        prims.append(segments(np.array(segs), 0.016 if L.style == "v1" else 0.009,
                              L.spoke_color))
    prims.append(circle(center, hub_r, L.metal))
    prims.append(circle(center, hub_r * 0.45, L.dark))
    return prims


def _tread(L, ring, t):
    """Tread blocks on the tyre (knobs on mountain bikes and BMX) and a sidewall stripe."""
    knobby = L.kind in ("mountain", "bmx")
    angles = np.arange(0.0, 360.0, 3.0 if knobby else 2.0)
    inner = ring(1.0 - (0.35 if knobby else 0.2) * t, angles)
    outer = ring(1.0 - 0.01, angles)
    tread = mix(L.tyre_color, (255, 255, 255), 0.22)
    prims = [segments(np.stack([inner, outer], 1), 0.03 if knobby else 0.012, tread)]
    if L.sidewall is not None:
        prims.append(closed_polyline(ring(1.0 - 0.72 * t, np.linspace(0, 360, 73)), 0.018,
                                     L.sidewall))
    return prims


def _mudguard(L, center, a0, a1, damaged, rng):
    r, t = 1.11, 0.065
    if not damaged:
        return [polyline(arc(center, r, a0, a1, 20), t, L.trim)]
    # Broken off: the outer piece is torn loose and sticks out.
    brk = rng.uniform(0.4, 0.65)
    ab = a0 + brk * (a1 - a0)
    piece = arc(center, r, ab + 4, a1, 12)
    piece = rotate_about(piece, piece[0], rng.choice([-1, 1]) * rng.uniform(18, 30))
    return [polyline(arc(center, r, a0, ab - 2, 14), t, L.trim), polyline(piece, t, L.trim),
            _crack(rng, piece[0], piece[0] + 0.12 * unit(rng.uniform(0, 360)), L.dark, 0.02)]


def _dress_guard(L, damaged, rng):
    c = L.back_axle
    a0, a1, r0, r1 = -178, -100, 0.3, 0.97
    prims = []
    if not damaged:
        prims.append(polygon(sector(c, r0, r1, a0, a1, 14), L.panel, alpha=0.55))
        prims.append(closed_polyline(sector(c, r0, r1, a0, a1, 14), 0.035, L.dark))
        strings = [[c + r0 * unit(a), c + r1 * unit(a)] for a in np.linspace(a0, a1, 7)[1:-1]]
        prims.append(segments(strings, 0.018, L.dark))
        return prims
    # Torn: the panel ends in a ragged edge, the outline is broken, strings hang loose.
    cut = rng.uniform(-150, -125)
    ragged = np.array([c + r * unit(cut + rng.uniform(-10, 10)) for r in np.linspace(r1, r0, 6)])
    poly = np.concatenate([arc(c, r1, a1, cut, 8), ragged, arc(c, r0, cut, a1, 6)])
    prims.append(polygon(poly, L.panel, alpha=0.55))
    prims.append(polyline(np.concatenate([arc(c, r1, a1, cut, 8), ragged]), 0.035, L.dark))
    loose = [[c + r1 * unit(a), c + r1 * unit(a) + rng.uniform(0.25, 0.45) * unit(
        rng.uniform(60, 120))] for a in np.linspace(cut - 8, a0 + 5, 3)]
    prims.append(segments(loose, 0.02, L.dark))
    prims.append(polyline(arc(c, r1, a0, a0 + 12, 4), 0.035, L.dark))
    return prims


def _chain_loop(L):
    """Chain path around sprocket (back axle) and chainring (bottom bracket), shape (n, 2)."""
    c1, c2, r1, r2 = L.back_axle, L.bb, L.sprocket_r + 0.02, L.chainring_r + 0.02
    d = c2 - c1
    dist = float(np.linalg.norm(d))
    base = math.degrees(math.atan2(d[1], d[0]))
    beta = math.degrees(math.asin((r2 - r1) / dist))
    up, down = base - 90 - beta, base + 90 + beta  # normals of the upper and lower runs
    top = [c1 + r1 * unit(up), c2 + r2 * unit(up)]
    bottom = [c2 + r2 * unit(down), c1 + r1 * unit(down)]
    return (np.array(top), arc(c2, r2, up, down - 0 if down > up else down + 360, 12),
            np.array(bottom), arc(c1, r1, down, up + 360, 8))


def _chain(L, damaged, rng):
    top, ring_arc, bottom, sprocket_arc = _chain_loop(L)
    if damaged:
        # Snapped: the lower run hangs down loose from the chainring.
        start = bottom[0]
        end = start + np.array([rng.uniform(-0.5, -0.2), rng.uniform(0.45, 0.7)])
        mid = (start + end) / 2 + np.array([rng.uniform(-0.15, 0.15), 0.05])
        path = np.concatenate([sprocket_arc[-3:], top, ring_arc])
        hanging = bezier(start, mid, end, 8)
        pieces = [path, hanging]
    else:
        pieces = [np.concatenate([top, ring_arc, bottom, sprocket_arc])]
    prims = []
    for p in pieces:
        prims.append(polyline(p, 0.055, (55, 55, 58)))
        # Link pattern: short light dashes along the chain.
        seg_len = np.linalg.norm(np.diff(p, axis=0), axis=1)
        s = np.concatenate([[0], np.cumsum(seg_len)])
        marks = np.arange(0.02, s[-1], 0.07)
        xs, ys = np.interp(marks, s, p[:, 0]), np.interp(marks, s, p[:, 1])
        q = np.stack([xs, ys], 1)
        if len(q) > 1:
            dash = [[q[i], q[i] + 0.6 * (q[i + 1] - q[i])] for i in range(len(q) - 1)]
            prims.append(segments(dash, 0.022, (150, 150, 155)))
    return prims


def _gear_case(L, damaged, rng):
    """Half chain guard over the chainring top and the upper chain run."""
    top, _, _, _ = _chain_loop(L)
    rr = L.chainring_r
    back = top[0] + (top[0] - top[1]) * -0.1
    span = top[1] - back
    nrm = unit(math.degrees(math.atan2(span[1], span[0])) - 90)
    upper = np.array([back + 0.1 * nrm, top[1] + 0.1 * nrm])
    outer = arc(L.bb, rr + 0.1, math.degrees(math.atan2(nrm[1], nrm[0])), 15, 10)
    inner = arc(L.bb, rr - 0.08, 15, -60, 6)
    lower = np.array([L.bb + (rr - 0.08) * unit(-60) + np.array([-0.05, 0.0]),
                      back - 0.07 * nrm])
    poly = np.concatenate([upper[:1], outer, inner, lower])
    color = L.trim
    if not damaged:
        return [polygon(poly, color), polyline(outer[2:-2] - 0.035 * (outer[2:-2] - L.bb), 0.02,
                                               mix(color, (255, 255, 255), 0.35))]
    # Cracked: the back half is broken off and hangs down; a crack runs across what is left.
    keep = poly[:, 0] > back[0] + rng.uniform(0.35, 0.5) * (L.bb[0] - back[0])
    front = poly[keep]
    piece = np.array([back + 0.1 * nrm, back + 0.35 * span + 0.1 * nrm,
                      back + 0.35 * span - 0.07 * nrm, back - 0.07 * nrm])
    piece = rotate_about(piece, piece[1], rng.uniform(25, 40))
    mid = front.mean(0)
    return [polygon(front, color), polygon(piece, color),
            _crack(rng, mid - np.array([0.1, 0.1]), mid + np.array([0.1, 0.12]),
                   mix(color, (255, 255, 255), .6) if luma(color) < 90 else _BLACK, 0.025)]


def _pedal(L, center, damaged, rng):
    if not damaged:
        return [polygon(rect(center, 0.3, 0.1, 0, 0.3), L.dark),
                polygon(rect(center + np.array([0.1, 0]), 0.06, 0.06, 0), _AMBER),
                polygon(rect(center - np.array([0.1, 0]), 0.06, 0.06, 0), _AMBER)]
    # Broken: half the body is gone, the rest hangs at an angle from the spindle.
    ang = rng.uniform(45, 75) * rng.choice([-1, 1])
    stub = center + 0.08 * unit(ang)
    return [polygon(rect(stub, 0.16, 0.1, ang, 0.3), L.dark),
            _crack(rng, stub + 0.08 * unit(ang), stub + 0.08 * unit(ang) + 0.06 * unit(ang + 90),
                   _FOAM, 0.02),
            circle(center, 0.03, L.metal)]


def _kickstand(L, damaged, rng):
    mount = L.bb + 0.25 * (L.back_axle - L.bb) / np.linalg.norm(L.back_axle - L.bb)
    foot = np.array([mount[0] - L.kick_reach, 1.0 - 0.03])
    color = L.kick_color
    if not damaged:
        return [polyline(np.array([mount, foot]), 0.06, color),
                polygon(rect(foot + np.array([0, 0.0]), 0.14, 0.05, 0), L.dark)]
    # Bent: the leg kinks half way and the foot no longer reaches the ground.
    knee = mount + rng.uniform(0.45, 0.6) * (foot - mount)
    rest = np.linalg.norm(foot - knee)
    ang = math.degrees(math.atan2(*(foot - knee)[::-1])) + rng.choice([-1, 1]) * rng.uniform(45, 70)
    end = knee + rest * 0.8 * unit(ang)
    return [polyline(np.array([mount, knee, end]), 0.06, color),
            _crack(rng, knee - 0.05 * unit(ang), knee + 0.06 * unit(ang + 90), _BLACK, 0.02)]


def _lock(L, damaged, rng):
    """Ring lock on the seat stays, straddling the back wheel."""
    c = L.back_axle
    a = L.lock_angle
    body = sector(c, 0.84, 1.06, a - 15, a + 15, 8)
    key = c + 0.99 * unit(a + 9)
    lever = np.array([c + 0.9 * unit(a - 8), c + 1.13 * unit(a - 11)])
    color = L.lock_color
    if not damaged:
        return [polygon(body, color), closed_polyline(body, 0.02, mix(color, (255, 255, 255), 0.3)),
                circle(key, 0.038, (215, 210, 160)), circle(key, 0.015, _BLACK),
                polyline(lever, 0.04, L.metal)]
    # Broken: the body is split, the outer half displaced, the key cylinder gone.
    inner = sector(c, 0.84, 1.06, a - 15, a - 2, 5)
    outer = rotate_about(sector(c, 0.84, 1.06, a + 3, a + 15, 5), c + 1.06 * unit(a + 15),
                         rng.uniform(20, 35))
    return [polygon(inner, color), polygon(outer, color), circle(key, 0.04, (10, 10, 10)),
            _crack(rng, c + 0.84 * unit(a + 1), c + 1.06 * unit(a), (230, 230, 230), 0.022)]


def _dynamo(L, damaged, rng):
    c = L.front_axle
    axis = L.dynamo_angle  # the body points at the wheel centre, its roller on the sidewall
    center = c + 0.77 * unit(axis)
    if not damaged:
        return [polygon(rect(center, 0.26, 0.1, axis, 0.3), L.metal),
                polygon(rect(center - 0.1 * unit(axis), 0.07, 0.105, axis, 0.2), L.dark),
                circle(center + 0.15 * unit(axis), 0.04, L.dark)]
    # Broken: swung away from the tyre, roller missing, body cracked.
    tilt = axis + rng.choice([-1, 1]) * rng.uniform(50, 80)
    center = c + 0.68 * unit(axis) + 0.08 * unit(tilt)
    return [polygon(rect(center, 0.2, 0.1, tilt, 0.3), L.metal),
            _crack(rng, center - 0.06 * unit(tilt + 90), center + 0.07 * unit(tilt + 60),
                   _BLACK, 0.022)]


def _lamp(L, center, facing, lens_color, housing, damaged, rng, size=(0.22, 0.15)):
    """A lamp: housing plus a lens on the face pointing along ``facing`` (degrees)."""
    length, width = size
    if not damaged:
        lens = rect(center + (length / 2 - 0.02) * unit(facing), 0.05, width * 1.05, facing, 0.4)
        return [polygon(rect(center, length, width, facing, 0.35), housing),
                polygon(lens, lens_color),
                circle(center + (length / 2 - 0.02) * unit(facing) - 0.02 * unit(facing + 90),
                       0.018, (255, 255, 255))]
    # Cracked and hanging: tilted down, lens dark and shattered, a corner missing.
    tilt = facing + rng.uniform(30, 50)
    body = rect(center, length, width, tilt, 0.35)[:6]
    face = center + (length / 2 - 0.02) * unit(tilt)
    dark_lens = mix(lens_color, (40, 40, 40), 0.6)
    return [polygon(body, housing), polygon(rect(face, 0.05, width, tilt, 0.4), dark_lens),
            _crack(rng, face - width / 2 * unit(tilt + 90), face + width / 2 * unit(tilt + 90),
                   (245, 245, 245), 0.02),
            _crack(rng, center, face + 0.04 * unit(tilt + 90), (245, 245, 245), 0.018)]


def _reflector(L, center, damaged, rng):
    r = L.reflector_r
    if not damaged:
        return [circle(center, r, (205, 25, 30)), circle(center, r * 0.62, (140, 10, 15), 0.02),
                circle(center - np.array([r * .3, r * .3]), r * 0.22, (255, 140, 140))]
    # Cracked: half of it broken away, a crack across the rest.
    a = rng.uniform(0, 360)
    half = arc(center, r, a, a + 180, 10)
    return [polygon(half, (205, 25, 30)),
            _crack(rng, center + r * 0.9 * unit(a + 60), center, (250, 220, 220), 0.018)]


def _saddle(L, damaged, rng):
    c = L.saddle_at + np.array([0.0, -0.04])
    ln, h = L.saddle_len, L.saddle_h
    shape = np.array([(-0.45, -0.25), (-0.38, -1.0), (-0.1, -1.05), (0.25, -0.65), (0.55, -0.5),
                      (0.55, -0.2), (0.2, 0.05), (-0.4, 0.05)]) * [ln, h] + c
    # The seat post is part of the saddle in v1; v2 draws it with the frame, so that it stays
    # when the saddle is missing.
    prims = [polyline(np.array([L.seat_top, L.saddle_at]), 0.07, L.metal)] if L.style == "v1" \
        else []
    spring = c + np.array([-0.3 * ln, 0.02])
    zig = np.array([spring + np.array([0.04 * ((-1) ** k), 0.035 * k]) for k in range(5)])
    if L.springs:
        prims.append(polyline(zig, 0.025, L.metal))
    if not damaged:
        prims.append(polygon(shape, L.saddle))
        prims.append(polyline(shape[1:4] + [0, 0.02], 0.018, mix(L.saddle, (255, 255, 255), 0.25)))
        return prims
    # Torn: the cover is ripped open at the top (foam shows) and the saddle is tilted.
    tilt = rng.choice([-1, 1]) * rng.uniform(12, 22)
    shape = rotate_about(shape, c, tilt)
    prims.append(polygon(shape, L.saddle))
    tear = np.array([(-0.3, -0.95), (-0.15, -0.55), (0.0, -0.9), (0.12, -0.5), (0.25, -0.7),
                     (0.1, -0.25), (-0.2, -0.3)]) * [ln, h] + c
    prims.append(polygon(rotate_about(tear, c, tilt), _FOAM))
    return prims


def _steer(L, damaged, rng):
    stem = [L.head_top, L.head_top + 0.6 * (L.stem_top - L.head_top), L.stem_top]
    front_bar = bezier(L.stem_top, L.stem_top + np.array([0.1, -0.12]), L.grip_front, 8)
    back_bar = bezier(L.stem_top, L.stem_top + np.array([0.08, 0.03]), L.grip_back, 8)
    if damaged:
        # Bent bar: one side kinked down / forward.
        side = back_bar if rng.random() < 0.5 else front_bar
        side[4:] = rotate_about(side[4:], side[4], rng.choice([-1, 1]) * rng.uniform(25, 40))
        return [polyline(np.array(stem), 0.075, L.metal), polyline(front_bar, 0.055, L.metal),
                polyline(back_bar, 0.055, L.metal),
                _crack(rng, side[4] - [0.05, 0.05], side[4] + [0.05, 0.06], _BLACK, 0.022)]
    return [polyline(np.array(stem), 0.075, L.metal), polyline(front_bar, 0.055, L.metal),
            polyline(back_bar, 0.055, L.metal)]


def _grip_end(L, which):
    return L.grip_front if which == "front" else L.grip_back


def _handle(L, which, damaged, rng):
    p0 = _grip_end(L, which)
    p1 = p0 + L.grip_len * L.grip_dir
    if not damaged:
        return [polyline(np.array([p0, p1]), 0.11, L.grip),
                polyline(np.array([p1 - 0.02 * L.grip_dir, p1]), 0.12, mix(L.grip, (0, 0, 0), .4))]
    # Torn grip: half the rubber is gone, the bare bar shows, the end is frayed.
    mid = p0 + 0.5 * L.grip_len * L.grip_dir
    fray = np.array([mid, mid + 0.05 * unit(100), mid + 0.03 * L.grip_dir,
                     mid + 0.06 * unit(250)])
    return [polyline(np.array([p0, mid]), 0.11, L.grip),
            polyline(np.array([mid, p1]), 0.05, L.metal),
            polyline(fray, 0.025, _FOAM)]


def _hand_brake(L, which, damaged, rng):
    """Lever under the grip: a clamp at the bar and a blade angled a little below the grip."""
    grip_angle = math.degrees(math.atan2(L.grip_dir[1], L.grip_dir[0]))
    p0 = _grip_end(L, which) + np.array([0.03, 0.06])
    mid = p0 + 0.15 * unit(grip_angle - 24)
    end = mid + 0.17 * unit(grip_angle - 6)
    clamp = circle(p0, 0.04, L.brake_color)
    if not damaged:
        return [clamp, polyline(np.array([p0, mid, end]), 0.04, L.brake_color)]
    # Snapped lever: a short stub, the broken blade points down.
    brk = p0 + 0.55 * (mid - p0)
    piece = brk + 0.15 * unit(rng.uniform(75, 110))
    return [clamp, polyline(np.array([p0, brk]), 0.04, L.brake_color),
            polyline(np.array([brk + 0.03 * unit(90), piece]), 0.04, L.brake_color)]


def _bell(L, damaged, rng):
    on_bar = bezier(L.stem_top, L.stem_top + np.array([0.1, -0.12]), L.grip_front, 8)[3]
    r = L.bell_r
    c = on_bar + np.array([0.0, -r * 0.7])
    if not damaged:
        return [circle(c, r, L.bell), circle(c, r * 0.8, mix(L.bell, (0, 0, 0), 0.35), 0.012),
                circle(c - np.array([r * .3, r * .35]), r * 0.25, (255, 255, 255)),
                polyline(np.array([c + [r * 0.6, r * 0.5], c + [r * 1.3, r * 0.9]]), 0.025,
                         L.metal)]
    # Dented and cracked dome, lever gone.
    dome = arc(c, r, 180, 360, 10)
    dome = np.concatenate([dome, [c + np.array([r * 0.9, r * 0.2]), c + np.array([0, r * 0.35]),
                                  c + np.array([-r, r * 0.5])]])
    return [polygon(dome, mix(L.bell, (90, 70, 50), 0.35)),
            _crack(rng, c + np.array([-r * 0.5, -r * 0.8]), c + np.array([r * 0.4, r * 0.3]),
                   _BLACK, 0.02)]


def _frame(L):
    """Context (not a part): tubes, fork, crank arms, chainring, rack, stays."""
    c = L.frame
    t = L.tube
    A, B, S, Hb, Ht = L.back_axle, L.bb, L.seat_top, L.head_bot, L.head_top
    prims = [polyline(np.array([A, B]), t * 0.75, c),            # chain stay
             polyline(np.array([A, S - 0.06 * L.seat_dir]), t * 0.7, c),  # seat stay
             polyline(np.array([B, S]), t, c),                   # seat tube
             polyline(np.array([Hb, Ht]), t * 1.25, c)]          # head tube
    fork = bezier(L.front_axle, L.front_axle + 0.5 * (Hb - L.front_axle) + [0.08, 0], Hb, 6)
    prims.append(polyline(fork, t * 0.85, c))
    style = L.frame_style
    if style == "diamond":
        prims += [polyline(np.array([Ht + 0.05 * L.head_dir, S + 0.06 * (B - S)]), t, c),
                  polyline(np.array([Hb - 0.05 * L.head_dir, B]), t * 1.1, c)]
    elif style == "sloping":
        prims += [polyline(np.array([Ht, B + 0.7 * (S - B)]), t, c),
                  polyline(np.array([Hb, B]), t * 1.1, c)]
    else:  # step-through: a low curved down tube, "mixte" adds a second one
        top = Hb + 0.55 * (Ht - Hb)
        prims.append(polyline(bezier(top, np.array([B[0] + 0.35, B[1] - 0.15]), B, 10),
                              t * 1.15, c))
        if style == "mixte":
            prims.append(polyline(bezier(Ht, np.array([B[0] + 0.5, B[1] - 0.75]),
                                         B + 0.45 * (S - B), 10), t * 0.9, c))
    if L.style == "v2":
        prims.append(polyline(np.array([S, L.saddle_at]), 0.07, L.metal))  # seat post
    if L.has_rack:
        back_end = np.array([-1.08, L.rack_y])
        front_end = S + 0.1 * (A - S) + np.array([0.0, 0.0])
        prims += [polyline(np.array([front_end, [front_end[0], L.rack_y], back_end]), 0.045,
                           L.rack),
                  polyline(np.array([[-0.85, L.rack_y], A]), 0.035, L.rack),
                  polyline(np.array([[-0.35, L.rack_y], A]), 0.035, L.rack)]
        if L.kind == "longtail":
            # The deck: a plank on the long rack, its tube braced down to the chain stay.
            deck = np.array([[-1.05, L.rack_y - 0.07], [front_end[0], L.rack_y - 0.07]])
            stay = A + 0.55 * (B - A)
            prims += [polyline(deck, 0.07, mix(L.rack, (0, 0, 0), 0.35)),
                      polyline(np.array([[stay[0], L.rack_y], stay]), 0.05, L.frame),
                      polyline(np.array([[0.35, L.rack_y], A]), 0.035, L.rack)]
    return prims


def _crank(L, end):
    return [polyline(np.array([L.bb, end]), 0.07, L.metal), circle(end, 0.03, L.dark)]


class Bike:
    """All parts of one bike: ``parts[name] = (prims, z)``, ``context = [(prims, z)]``."""

    def __init__(self, rng, states, background, style="v1"):
        L = self.layout = _Layout(rng, background, style)
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
            back_light_at = L.back_axle + 1.22 * unit(-160)
        reflector_at = L.back_axle + (1.11 + L.reflector_r + 0.03) * unit(u(-192, -180))
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
                        ([circle(L.bb, L.chainring_r, (90, 90, 95)),
                          circle(L.bb, L.chainring_r - 0.05, L.metal, 0.03),
                          circle(L.bb, 0.07, L.dark)], 7),
                        ([circle(L.back_axle, L.sprocket_r, (90, 90, 95))], 7),
                        (_crank(L, near), 10)]
        if states["dynamo"] != STATE_ABSENT and states["front_light"] != STATE_ABSENT:
            wire = bezier(L.front_axle + 0.85 * unit(L.dynamo_angle),
                          L.head_bot + np.array([0.05, 0.3]), front_light_at, 8)
            self.context.append(([polyline(wire, 0.015, _BLACK)], 11))
        # Absent parts leave their mount (v2): {name: (prims, z)}, drawn for absent parts only.
        self.mounts = {}
        self.accessories = []  # v2: crates, baskets, child seats, bags, drawn over the bike
        if style == "v2":
            self.context = [(shade(prims, L.shade), z) for prims, z in self.context]
            for name in ("steer", "front_mudguard", "back_mudguard", "kickstand"):
                prims, z = self.parts[name]
                self.parts[name] = (shade(prims, L.shade), z)
            self.accessories = build_accessories(L, rng, states["saddle"] != STATE_ABSENT)
            self.mounts = build_mounts(L, {"front_pedal": front_p, "back_pedal": back_p,
                                           "front_light": front_light_at,
                                           "back_light": back_light_at,
                                           "back_reflector": reflector_at},
                                       [n for n in PART_NAMES if states[n] == STATE_ABSENT])

    def bounds(self, place):
        prims = [p for prims, _ in self.parts.values() for p in prims]
        prims += [p for prims, _ in self.context for p in prims]
        return union_bounds(prims, place)

    def draw(self, img, place):
        layers = [(z, i, prims) for i, (prims, z) in enumerate(self.context)]
        for i, name in enumerate(PART_NAMES):
            prims, z = self.parts[name]
            if self.states[name] != STATE_ABSENT:
                layers.append((z, 100 + i, prims))
            elif name in self.mounts:
                mount, mount_z = self.mounts[name]
                layers.append((mount_z, 100 + i, mount))
        for _, _, prims in sorted(layers, key=lambda t: (t[0], t[1])):
            for p in prims:
                draw_prim(img, p, place)

