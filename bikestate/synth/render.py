"""One SynthBikes picture: part states, the bike, its placement, the scene and the boxes."""
import math

import numpy as np

from ..constants import PART_NAMES, STATE_ABSENT, STATE_NAMES, STATE_OCCLUDED
from ..utils.errors import ConfigError
from .drawing import Placement, union_bounds
from .occlusion import MIN_OCCLUDED_COVERAGE, draw_occluders, place_occluders
from .parts import Bike
from .scene import background_palette, draw_background, photometric

__all__ = ["DEFAULT_STATE_PROBS", "check_state_probs", "render_bike"]

# Shares of intact, damaged, absent, occluded parts (STATE_NAMES order), as in DelftBikes.
DEFAULT_STATE_PROBS = (0.60, 0.06, 0.20, 0.14)

# Parts overlap (the dress guard lies on the back wheel, levers under the grips), so an occluder
# also covers some visible neighbours >= 40%, which then count as occluded too. Per occluded
# part, about this fraction of the remaining visible parts is hit (measured on 300 images at the
# default shares); _sampling_probs draws fewer occluders up front so the final shares match.
_COLLATERAL_RATE = 0.6


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
    palette = background_palette(rng)
    bike = Bike(rng, states, background=(palette[0] + palette[1]) / 2)

    place, visible = _place_bike(rng, bike, width, height)
    img = draw_background(rng, palette, width, height, ground_y=place.ty + place.scale * 1.0)
    bike.draw(img, place)

    state_list = [states[n] for n in PART_NAMES]
    polys, mask, cov = place_occluders(rng, visible, state_list, width, height)
    if polys:
        draw_occluders(rng, img, polys)
        # A part that the occluders happen to cover as much as an occluded one is occluded too.
        for i, name in enumerate(PART_NAMES):
            if states[name] != STATE_ABSENT and cov[i] >= MIN_OCCLUDED_COVERAGE:
                states[name] = STATE_OCCLUDED
    img = photometric(rng, img)

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
    bx0, by0, bx1, by1 = (v / ref for v in bike.bounds(Placement(ref, 1, 0.0, 0.0)))
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
        place = Placement(scale, flip, tx, top - scale * by0)
        raw = np.array([union_bounds(bike.parts[n][0], place) for n in PART_NAMES])
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

