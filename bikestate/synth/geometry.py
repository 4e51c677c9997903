"""Geometry helpers of the canonical bike frame: y points down, angles are in degrees, clockwise
on screen. Every function returns float64 points of shape (n, 2)."""
import math

import numpy as np

__all__ = ["unit", "arc", "sector", "bezier", "rect", "rotate_about"]


def unit(deg):
    a = math.radians(deg)
    return np.array([math.cos(a), math.sin(a)])


def arc(center, radius, a0, a1, n=24):
    """Points of a circular arc from angle ``a0`` to ``a1`` (degrees), shape (n, 2)."""
    a = np.radians(np.linspace(a0, a1, n))
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], axis=1)


def sector(center, r0, r1, a0, a1, n=16):
    """Closed polygon of the annulus sector r0..r1, a0..a1, shape (2n, 2)."""
    return np.concatenate([arc(center, r1, a0, a1, n), arc(center, r0, a1, a0, n)])


def bezier(p0, p1, p2, n=10):
    """Quadratic Bezier curve through control point ``p1``, shape (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def rect(center, length, width, angle_deg, cut=0.25):
    """Rectangle with cut corners (a cheap rounded rectangle) along ``angle_deg``, shape (8, 2)."""
    u, v = unit(angle_deg), unit(angle_deg + 90)
    hl, hw = length / 2, width / 2
    c = min(hl, hw) * cut * 2
    local = [(-hl + c, -hw), (hl - c, -hw), (hl, -hw + c), (hl, hw - c),
             (hl - c, hw), (-hl + c, hw), (-hl, hw - c), (-hl, -hw + c)]
    return np.array([center + x * u + y * v for x, y in local])


def rotate_about(points, pivot, deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    d = points - pivot
    return pivot + np.stack([d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c], axis=1)

