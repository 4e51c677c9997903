"""How SynthBikes v2 bikes look: bike types with their proportions, realistic frame colours, and
shading of tubes (a dark lower edge and a highlight, as paint or metal under light from above).

``restyle`` rewrites a v1 layout in place (the canonical frame is unchanged: wheel radius 1,
back axle at the origin), so every part builder works for every type.
"""
import math

import numpy as np

from .drawing import jitter, mix, polyline
from .geometry import unit

__all__ = ["BIKE_TYPES", "restyle", "shade"]

# Bike types and their shares: Dutch city bikes dominate parked bikes, then mountain bikes,
# folding bikes, BMX and longtail cargo bikes (a long loading deck over the back wheel).
BIKE_TYPES = ("city", "mountain", "folding", "bmx", "longtail")
_TYPE_SHARES = (0.56, 0.2, 0.12, 0.07, 0.05)

# Frame colours of real bikes with their shares: black and grey/silver are the most common.
_FRAME_COLORS = [((22, 22, 24), 0.3), ((150, 152, 158), 0.08), ((195, 196, 200), 0.06),
                 ((25, 38, 80), 0.1), ((150, 25, 30), 0.08), ((235, 235, 230), 0.07),
                 ((30, 65, 45), 0.08), ((70, 110, 160), 0.05), ((110, 70, 40), 0.04),
                 ((200, 190, 160), 0.05), ((120, 30, 90), 0.03), ((90, 160, 150), 0.03),
                 ((210, 160, 30), 0.03)]
_BLACK = (26, 26, 28)


def restyle(L, rng):
    """Give layout ``L`` a bike type (proportions, tyres, bar) and realistic colours."""
    u = rng.uniform
    L.kind = BIKE_TYPES[rng.choice(len(BIKE_TYPES), p=_TYPE_SHARES)]

    def move_front(wheelbase):
        shift = np.array([wheelbase - L.wheelbase, 0.0])
        L.wheelbase = wheelbase
        for key in ("front_axle", "head_bot", "head_top", "stem_top", "grip_front", "grip_back"):
            setattr(L, key, getattr(L, key) + shift)

    if L.kind == "mountain":
        L.tyre = u(0.14, 0.19)
        L.frame_style = str(rng.choice(["diamond", "sloping"]))
        L.has_rack = rng.random() < 0.15
        # A flat bar: grips at stem height, pointing back only a little.
        L.grip_front = L.stem_top + np.array([-u(0.1, 0.2), -u(0.0, 0.05)])
        L.grip_back = L.grip_front + np.array([-u(0.05, 0.1), u(0.04, 0.08)])
        L.grip_dir = unit(180 - u(0, 10))
    elif L.kind == "bmx":
        move_front(u(2.5, 2.75))
        L.bb = np.array([u(1.1, 1.25), u(0.0, 0.08)])
        L.tyre = u(0.15, 0.2)
        L.frame_style = "diamond"
        L.has_rack = False
        L.seat_top = L.bb + u(0.85, 1.05) * L.seat_dir
        L.saddle_at = L.seat_top + u(0.08, 0.2) * L.seat_dir
        rise = np.array([0.0, -u(0.3, 0.5)])
        L.stem_top, L.grip_front, L.grip_back = L.stem_top + rise, L.grip_front + rise, \
            L.grip_back + rise
    elif L.kind == "folding":
        move_front(u(3.6, 4.1))
        L.bb = np.array([L.wheelbase * u(0.42, 0.48), u(0.05, 0.15)])
        L.tyre = u(0.1, 0.14)
        L.frame_style = "step"
        L.seat_top = L.bb + u(1.3, 1.6) * L.seat_dir
        L.saddle_at = L.seat_top + u(0.8, 1.2) * L.seat_dir
        lift = L.head_dir * u(0.6, 0.9)  # long stem of a folding bike
        L.stem_top, L.grip_front, L.grip_back = L.stem_top + lift, L.grip_front + lift, \
            L.grip_back + lift
    elif L.kind == "longtail":
        # The back wheel sits far behind the seat tube, under a deck that reaches past it:
        # everything in front of the back axle moves forward, the wheels keep their size.
        extra = u(0.8, 1.1)
        move_front(L.wheelbase + extra)
        for key in ("bb", "seat_top", "saddle_at"):
            setattr(L, key, getattr(L, key) + np.array([extra, 0.0]))
        L.tyre = u(0.11, 0.16)
        L.frame_style = str(rng.choice(["step", "sloping"]))
        L.has_rack = True  # the deck
        L.rack_y = -u(1.18, 1.28)
    L.lock_angle = math.degrees(math.atan2(L.seat_top[1], L.seat_top[0])) + u(-4, 4)

    colors, shares = zip(*_FRAME_COLORS)
    L.frame = jitter(rng, colors[rng.choice(len(colors), p=np.asarray(shares) / sum(shares))], 10)
    L.trim = [L.frame, jitter(rng, _BLACK, 6), jitter(rng, (175, 176, 182), 12)][
        rng.choice(3, p=[.4, .45, .15])]
    L.tyre_color = jitter(rng, (34, 34, 36), 8)
    L.rim_color = jitter(rng, (190, 192, 198), 20) if rng.random() < .75 else jitter(
        rng, _BLACK, 6)
    L.sidewall = [None, (200, 200, 205), (170, 135, 95)][rng.choice(3, p=[.55, .3, .15])]
    L.spoke_color = jitter(rng, (175, 177, 184), 15)
    L.shade = rng.uniform(0.5, 1.0)  # strength of highlights: matte paint .. glossy metal


def shade(prims, strength):
    """``prims`` with every thick open stroke followed by its lower shadow and its highlight.

    Offsets stay inside the stroke, so bounds do not change; the light comes from above.
    """
    out = []
    for p in prims:
        out.append(p)
        if p.kind != "line" or p.thick < 0.04 or len(p.pts) < 2:
            continue
        d = np.empty_like(p.pts)  # tangents: central differences, one-sided at the ends
        d[1:-1] = p.pts[2:] - p.pts[:-2]
        d[0], d[-1] = p.pts[1] - p.pts[0], p.pts[-1] - p.pts[-2]
        n = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)[:, None]
        n *= np.where(n[:, 1:2] > 0, -1.0, 1.0)  # the normal that points up on screen
        dark = mix(p.color, (0, 0, 0), 0.45 * strength)
        light = mix(p.color, (255, 255, 255), 0.5 * strength)
        out.append(polyline(p.pts - 0.28 * p.thick * n, 0.38 * p.thick, dark))
        out.append(polyline(p.pts + 0.22 * p.thick * n, 0.22 * p.thick, light))
    return out

