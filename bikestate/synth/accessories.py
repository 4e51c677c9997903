"""Accessories of SynthBikes v2 bikes: a crate or a basket on the front carrier, a child seat or
a bag on the rack (city bikes), running boards, side bags, a bench or a child seat on the deck
(longtail cargo bikes), a plastic bag pulled over the saddle against rain (any bike).
They are not parts (DelftBikes has no box for them), but they cover what lies behind them like
occluders do, so the renderer counts their pixels as occlusion."""
import numpy as np

from .drawing import circle, jitter, mix, polygon, polyline, segments

__all__ = ["build_accessories"]

_PLASTIC = [(25, 25, 28), (30, 60, 140), (150, 30, 30), (40, 110, 60), (120, 120, 125)]
_WICKER = (150, 110, 60)
# Bin bag, supermarket blue, white, yellow, red.
_BAG = [(25, 25, 28), (30, 70, 160), (225, 225, 218), (220, 190, 40), (170, 30, 30)]

# Share of bikes whose saddle (when it is there) wears a plastic bag.
SADDLE_COVER_SHARE = 0.08


def _front_carrier(L, rng):
    """Crate or basket above the front wheel, on a carrier fixed to the head tube."""
    x0 = L.head_bot[0] + rng.uniform(0.05, 0.12)
    length, height = rng.uniform(0.75, 0.95), rng.uniform(0.35, 0.5)
    bottom = L.head_bot[1] - rng.uniform(0.14, 0.2)
    x1, top = x0 + length, bottom - height
    carrier = [polyline(np.array([[x0 - 0.05, bottom + 0.02], [x1, bottom + 0.02]]), 0.035,
                        L.metal),
               polyline(np.array([[x1 - 0.1, bottom + 0.02], L.front_axle + [0.05, -0.3]]), 0.03,
                        L.metal)]
    if rng.random() < 0.6:  # plastic crate: a box with slots
        color = jitter(rng, _PLASTIC[rng.integers(len(_PLASTIC))], 10)
        box = np.array([[x0, top], [x1, top], [x1, bottom], [x0, bottom]])
        rows = np.linspace(top + 0.08, bottom - 0.08, 3)
        slots = [[[x0 + 0.06, y], [x1 - 0.06, y]] for y in rows]
        return carrier + [polygon(box, color),
                          segments(slots, 0.05, mix(color, (0, 0, 0), 0.55)),
                          polyline(box[:2], 0.04, mix(color, (255, 255, 255), 0.3))]
    # Wicker basket: a trapezoid with a woven pattern.
    color = jitter(rng, _WICKER, 15)
    shape = np.array([[x0 - 0.05, top], [x1 + 0.05, top], [x1 - 0.03, bottom],
                      [x0 + 0.03, bottom]])
    weave = [[[x, top + 0.03], [x + 0.04, bottom - 0.03]] for x in np.arange(x0, x1, 0.07)]
    rows = [[[x0, y], [x1, y]] for y in np.arange(top + 0.07, bottom, 0.08)]
    return carrier + [polygon(shape, color), segments(weave, 0.02, mix(color, (0, 0, 0), 0.4)),
                      segments(rows, 0.02, mix(color, (255, 255, 255), 0.25)),
                      polyline(shape[:2], 0.05, mix(color, (0, 0, 0), 0.2))]


def _child_seat(L, rng, dx=0.0):
    """Rear child seat on the rack, its back ``dx`` forward of the rack's end: a moulded shell
    with a high back."""
    color = jitter(rng, _PLASTIC[rng.integers(len(_PLASTIC))], 10)
    y = L.rack_y
    shell = np.array([[-0.98, y - 0.85], [-0.82, y - 0.9], [-0.72, y - 0.35], [-0.3, y - 0.3],
                      [-0.25, y - 0.05], [-0.95, y - 0.02]]) + np.array([dx, 0.0])
    return [polygon(shell, color), polyline(shell[1:4], 0.03, mix(color, (255, 255, 255), 0.3)),
            circle(np.array([-0.55 + dx, y - 0.2]), 0.05, mix(color, (0, 0, 0), 0.4))]


def _longtail_load(L, rng):
    """What a longtail carries on and beside its deck (which runs from behind the back axle to
    the seat tube): running boards for passengers' feet, big side bags hanging over the back
    wheel, a padded bench or a child seat."""
    deck_end = L.seat_top[0] - 0.15
    prims = []
    if rng.random() < 0.7:  # running board: a plank beside the back wheel, braced to the deck
        y = rng.uniform(-0.5, -0.35)
        x0, x1 = rng.uniform(-0.8, -0.6), min(deck_end, L.bb[0] - 0.45)
        color = jitter(rng, [(30, 30, 32), (120, 85, 50)][rng.integers(2)], 10)
        prims += [segments([[[x, L.rack_y], [x, y]] for x in (x0 + 0.1, x1 - 0.1)], 0.035,
                           L.rack),
                  polygon(np.array([[x0, y - 0.04], [x1, y - 0.04], [x1 + 0.04, y + 0.04],
                                    [x0 - 0.04, y + 0.04]]), color)]
    if rng.random() < 0.35:  # side bag: a deep pannier hanging from the deck
        color = jitter(rng, _PLASTIC[rng.integers(len(_PLASTIC))], 12)
        x0, x1 = rng.uniform(-0.95, -0.75), rng.uniform(0.1, 0.45)
        depth = rng.uniform(0.6, 0.85)
        bag = np.array([[x0, L.rack_y], [x1, L.rack_y], [x1 - 0.05, L.rack_y + depth],
                        [x0 + 0.08, L.rack_y + depth]])
        prims += [polygon(bag, color),
                  polyline(bag[:2] + [0.0, 0.08], 0.03, mix(color, (0, 0, 0), 0.4)),
                  polyline(bag[2:] + [0.0, -0.05], 0.025, mix(color, (255, 255, 255), 0.3))]
    load = rng.random()
    if load < 0.35:  # a padded bench along the deck
        color = jitter(rng, [(25, 25, 28), (90, 60, 40), (40, 60, 110)][rng.integers(3)], 10)
        y = L.rack_y - 0.07
        bench = np.array([[-0.7, y], [deck_end - 0.35, y], [deck_end - 0.4, y - 0.14],
                          [-0.65, y - 0.14]])
        prims += [polygon(bench, color),
                  polyline(bench[2:], 0.03, mix(color, (255, 255, 255), 0.3))]
    elif load < 0.6:
        prims += _child_seat(L, rng, dx=rng.uniform(0.4, deck_end - 0.4))
    return prims


def _rack_bag(L, rng):
    color = jitter(rng, [(30, 30, 32), (60, 50, 40), (40, 60, 90)][rng.integers(3)], 10)
    y = L.rack_y
    bag = np.array([[-0.95, y - 0.28], [-0.3, y - 0.3], [-0.25, y - 0.02], [-0.97, y - 0.02]])
    return [polygon(bag, color), polyline(np.array([[-0.62, y - 0.3], [-0.62, y]]), 0.03,
                                          mix(color, (255, 255, 255), 0.35))]


def _saddle_cover(L, rng):
    """A plastic bag pulled over the saddle and knotted under it, with creases and a sheen."""
    c = L.saddle_at + np.array([0.0, -0.04])
    scale = np.array([L.saddle_len, L.saddle_h]) * rng.uniform(1.0, 1.15, 2)
    outline = np.array([(-0.55, -0.3), (-0.45, -1.25), (-0.1, -1.3), (0.3, -0.85),
                        (0.68, -0.65), (0.7, -0.1), (0.35, 0.4), (0.08, 0.75), (-0.2, 0.45),
                        (-0.52, 0.25)]) * scale + c
    outline += rng.normal(0.0, 0.012, outline.shape)  # no two bags sit alike
    knot = np.array([0.06, 0.8]) * scale + c
    color = jitter(rng, _BAG[rng.integers(len(_BAG))], 12)
    creases = [[knot, outline[k] * 0.8 + knot * 0.2] for k in (1, 3, 5)]
    return [polygon(outline, color),
            segments(creases, 0.015, mix(color, (0, 0, 0), 0.35)),
            polyline(outline[1:4] + [0.0, 0.03], 0.02, mix(color, (255, 255, 255), 0.45)),
            circle(knot, 0.035, mix(color, (0, 0, 0), 0.2))]


def build_accessories(L, rng, saddle_there=True):
    """Accessory primitives of layout ``L``, drawn over the bike; ``saddle_there``: the saddle
    is not absent (only then can a bag cover it)."""
    prims = []
    if saddle_there and rng.random() < SADDLE_COVER_SHARE:
        prims += _saddle_cover(L, rng)
    if L.kind == "longtail":
        return prims + _longtail_load(L, rng)
    if L.kind != "city":
        return prims
    if rng.random() < 0.35:
        prims += _front_carrier(L, rng)
    if L.has_rack:
        choice = rng.random()
        if choice < 0.15:
            prims += _child_seat(L, rng)
        elif choice < 0.3:
            prims += _rack_bag(L, rng)
    return prims
