"""What a missing part leaves behind on a SynthBikes v2 bike: its mount.

A bike without its front wheel still has its fork ends and axle nuts, a seat post without its
saddle has its clamp, a crank without its pedal has a bare spindle. A detector that learns
"fork ends present" = "wheel present" reports wheels that are gone; drawing the mounts of absent
parts teaches it the difference. The mounts are small primitives at the part's attachment
point, drawn only when the part is absent.
"""
import math

import numpy as np

from ..constants import PART_NAMES
from .drawing import circle, polygon, polyline, segments
from .geometry import arc, rect, unit

__all__ = ["build_mounts"]


def _axle(L, centre, direction):
    """Dropout plate, axle nut and a quick-release lever at ``centre``."""
    return [polygon(rect(centre, 0.26, 0.1, direction, 0.4), L.frame),
            circle(centre, 0.07, L.metal), circle(centre, 0.03, L.dark),
            polyline(np.array([centre, centre + 0.2 * unit(direction + 15)]), 0.035, L.metal)]


def _stays(L, centre, angles):
    """Mudguard stays left on the axle: thin rods ending in bent tabs."""
    rods = [[centre + 0.08 * unit(a), centre + 1.0 * unit(a)] for a in angles]
    tabs = [circle(centre + 1.0 * unit(a), 0.03, L.metal) for a in angles]
    return [segments(rods, 0.02, L.metal)] + tabs


def _bracket(L, at, angle, length=0.12, width=0.06, color=None):
    return [polygon(rect(at, length, width, angle, 0.3), color or L.metal),
            circle(at, min(width, length) * 0.3, L.dark)]


def build_mounts(L, anchors, names=PART_NAMES):
    """Mount primitives and drawing order of parts ``names``: ``{name: (prims, z)}``.

    Args:
        L: the bike's layout.
        anchors (dict): canonical points the part builders used: ``front_pedal``, ``back_pedal``,
            ``front_light``, ``back_light``, ``back_reflector``.
        names: the parts whose mounts are wanted (the absent ones).
    """
    A, F, B = L.back_axle, L.front_axle, L.bb
    chainstay = math.degrees(math.atan2(*(B - A)[::-1]))
    fork = math.degrees(math.atan2(L.head_dir[1], L.head_dir[0]))
    grip_angle = math.degrees(math.atan2(L.grip_dir[1], L.grip_dir[0]))
    kick_at = B + 0.25 * (A - B) / np.linalg.norm(A - B)
    lock_c = [A + 0.95 * unit(L.lock_angle + s) for s in (-14, 14)]
    teeth = [[B + (L.chainring_r - 0.01) * unit(a), B + (L.chainring_r + 0.035) * unit(a)]
             for a in np.arange(0, 360, 10)]

    def bar_end(grip):
        return [polyline(np.array([grip, grip + 0.8 * L.grip_len * L.grip_dir]), 0.05, L.metal),
                circle(grip + 0.8 * L.grip_len * L.grip_dir, 0.03, L.dark)]

    def lever_clamp(grip):
        at = grip + np.array([0.03, 0.06])
        # A dark clamp band with the stub of the lever pivot: visible on a metal bar.
        return [circle(at, 0.05, L.dark),
                polyline(np.array([at, at + 0.08 * unit(grip_angle - 24)]), 0.04, L.brake_color)]

    bell_at = L.stem_top + 0.45 * (L.grip_front - L.stem_top)
    def pedal(at):  # bare spindle: a dark lock nut around it, visible on a metal crank
        return [circle(at, 0.055, L.dark), circle(at, 0.025, L.metal)]

    def front_light():  # the bracket, on an arm from the fork crown
        at = anchors["front_light"] - np.array([0.06, 0.0])
        return [polyline(np.array([L.head_bot, at]), 0.035, L.metal)] + \
            _bracket(L, at, 90, 0.1, 0.06)

    def reflector():
        at = anchors["back_reflector"]
        return [polyline(arc(at, 0.05, 0, 180, 6), 0.03, L.metal), circle(at, 0.03, L.dark)]

    def steerer():  # the steerer tube sticking out of the head tube, with its top cap
        top = L.head_top + 0.14 * L.head_dir
        return [polyline(np.array([L.head_top, top]), 0.075, L.metal),
                circle(top, 0.045, L.dark)]

    # Builders (called only for the parts asked for) and drawing order.
    mounts = {
        "back_wheel": (lambda: _axle(L, A, chainstay + 180), 9.5),
        "front_wheel": (lambda: _axle(L, F, fork), 9.5),
        "dress_guard": (lambda: [circle(A + 0.97 * unit(a), 0.035, L.dark)
                                 for a in (-165, -135, -108)], 3.5),
        "back_mudguard": (lambda: _stays(L, A, (-200, -150)), 4.5),
        "front_mudguard": (lambda: _stays(L, F, (-40, 20)), 4.5),
        "kickstand": (lambda: _bracket(L, kick_at, chainstay, 0.2, 0.09, L.dark), 8.5),
        "chain": (lambda: [segments(teeth, 0.03, L.metal)], 8.5),
        "gear_case": (lambda: _bracket(L, B + np.array([-0.1, -L.chainring_r - 0.08]), chainstay)
                      + _bracket(L, A + 0.35 * (B - A) + np.array([0.0, -0.08]), chainstay), 9.5),
        "front_pedal": (lambda: pedal(anchors["front_pedal"]), 10.5),
        "back_pedal": (lambda: pedal(anchors["back_pedal"]), 10.5),
        "lock": (lambda: _bracket(L, lock_c[0], L.lock_angle + 76)
                 + _bracket(L, lock_c[1], L.lock_angle + 104), 11.5),
        "dynamo": (lambda: _bracket(L, F + 0.7 * L.head_dir, fork + 90, 0.14, 0.07), 11.5),
        "front_light": (front_light, 11.5),
        "back_light": (lambda: _bracket(L, anchors["back_light"], 90, 0.11, 0.07, L.dark), 11.5),
        "back_reflector": (reflector, 11.5),
        "saddle": (lambda: [polygon(rect(L.saddle_at, 0.2, 0.07, 0, 0.3), L.metal),
                            circle(L.saddle_at, 0.035, L.dark)], 12.5),
        "steer": (steerer, 12.5),
        "front_handle": (lambda: bar_end(L.grip_front), 13.5),
        "back_handle": (lambda: bar_end(L.grip_back), 13.5),
        "front_handbreak": (lambda: lever_clamp(L.grip_front), 14.5),
        "back_hand_break": (lambda: lever_clamp(L.grip_back), 14.5),
        "bell": (lambda: [circle(bell_at, 0.055, L.dark), circle(bell_at, 0.025, L.metal)], 14.5),
    }
    return {name: (mounts[name][0](), mounts[name][1]) for name in names}
