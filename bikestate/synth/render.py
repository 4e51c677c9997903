"""One SynthBikes picture: part states, the bike, its placement, the scene and the boxes.

Two styles: ``v1`` draws flat side-view city bikes over a plain wall and floor; ``v2`` draws
photo-like pictures (bike types, shaded tubes, tyre tread, mounts of missing parts, textured
walls and paving in perspective, racks, poles and parked bikes, a ground shadow, the camera's
yaw and roll as a perspective warp, bikes cut by the picture's border, camera effects).
"""
import math

import cv2
import numpy as np

from ..constants import PART_NAMES, STATE_ABSENT, STATE_NAMES, STATE_OCCLUDED
from ..utils.errors import ConfigError
from .camera import apply_camera
from .drawing import Placement, draw_prim, union_bounds
from .occlusion import MIN_OCCLUDED_COVERAGE, draw_occluders, draw_occluders_v2, place_occluders
from .parts import Bike
from .props import draw_ground_shadow, draw_props
from .scene import background_palette, draw_background, photometric
from .surfaces import draw_floor, draw_wall
from .viewpoint import Outline, canvas_size, sample_view, warp_image, warp_points

__all__ = ["DEFAULT_STATE_PROBS", "POSE_SHARES", "SYNTH_STYLES", "check_state_probs", "render_bike",
           "state_probs_label"]

# Picture styles; v1 images never change for a given seed.
SYNTH_STYLES = ("v1", "v2")

# Shares of intact, damaged, absent, occluded parts (STATE_NAMES order), as in DelftBikes.
DEFAULT_STATE_PROBS = (0.60, 0.06, 0.20, 0.14)

# Parts overlap (the dress guard lies on the back wheel, levers under the grips), so an occluder
# also covers some visible neighbours >= 40%, which then count as occluded too. Per occluded
# part, about this fraction of the remaining visible parts is hit (measured on 300 images at the
# default shares); _sampling_probs draws fewer occluders up front so the final shares match.
# v2 pictures add parts cut by the picture's border, which also count as occluded.
_COLLATERAL_RATE = {"v1": 0.6, "v2": 0.7}

# A v2 bike may be cut by the picture's border (as in photos). A part that keeps less than this
# fraction of its box inside the picture counts as occluded; none is left wholly outside (a
# DelftBikes box must overlap its image).
MIN_INSIDE_VISIBLE = 0.6
MIN_INSIDE_ANY = 0.25

# v2 walls and floors are computed at 1/3 of the canvas resolution and resized.
_SURFACE_SCALE = 3

# Poses of a v2 bike and their shares: standing on its wheels (leaning or on the kickstand),
# upside down on saddle and bar (as for a repair), lying on its side on the ground and
# photographed from above.
POSE_SHARES = {"standing": 0.91, "upside_down": 0.04, "lying": 0.05}


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


def state_probs_label(state_probs):
    """A folder-name tag of state shares, e.g. ``states50-16-20-14`` for (0.5, 0.16, 0.2, 0.14):
    splits drawn with other shares never share a folder."""
    return "states" + "-".join(f"{round(100 * p):g}" for p in state_probs)


def _sampling_probs(probs, k):
    """Per-part sampling shares that give ``probs`` once collateral occlusion is counted.

    With q the sampled occluded share, a the absent share and k the style's _COLLATERAL_RATE, the
    final occluded share is about q + (1 - a - q) * k * q; solve it for q = probs[occluded], give
    intact and damaged the freed share in their own proportion.
    """
    intact, damaged, absent, occluded = probs
    if intact + damaged <= 0 or occluded <= 0:
        return probs
    b = 1 + k * (1 - absent)
    q = (b - math.sqrt(max(b * b - 4 * k * occluded, 0.0))) / (2 * k)
    r = (1 - absent - q) / (intact + damaged)
    return (intact * r, damaged * r, absent, q)


def render_bike(rng, width, height, state_probs=DEFAULT_STATE_PROBS, return_occlusion=False,
                style="v1", return_details=False):
    """Draw one SynthBikes picture.

    Args:
        rng (numpy.random.Generator): the only source of randomness.
        width, height (int): image size in pixels.
        state_probs: shares of intact, damaged, absent, occluded parts (STATE_NAMES order).
        return_occlusion (bool): also return the occluder mask (for tests and debugging).
        style (str): one of SYNTH_STYLES.
        return_details (bool): return a dict of intermediate results instead of the mask (for
            tests and debugging): "occlusion" (the mask), "background" (the picture without
            the bike and its occluders, before camera effects), "inside" (22 fractions of each
            part's box inside the picture) and, v2 only, "mounts" (part name -> pixel box
            (x0, y0, x1, y1) of the mount drawn for each absent part) and "pose" (one of
            POSE_SHARES and the angle in degrees by which the bike is turned).

    Returns:
        image (np.ndarray): H x W x 3 uint8, RGB.
        parts (dict): part name -> {"box": (left, top, width, height) floats in pixels, clipped
            to the image, "state": int}, for all 22 PART_NAMES in that order.
        occlusion (np.ndarray, only with ``return_occlusion``): H x W bool, True where an
            occluder was painted.
        details (dict, only with ``return_details``).
    """
    if style not in SYNTH_STYLES:
        raise ConfigError(f"SynthBikes style must be one of {', '.join(SYNTH_STYLES)}, "
                          f"got {style!r}")
    probs = check_state_probs(state_probs)
    width, height = int(width), int(height)
    sampling = _sampling_probs(probs, _COLLATERAL_RATE[style])
    states = {n: int(s) for n, s in zip(PART_NAMES,
                                        rng.choice(4, size=len(PART_NAMES), p=sampling))}
    render = _render_v1 if style == "v1" else _render_v2
    img, boxes, inside, mask, details = render(rng, width, height, states, return_details)

    parts = {}
    for i, name in enumerate(PART_NAMES):
        x0, y0, x1, y1 = boxes[i]
        parts[name] = {"box": (round(float(x0), 1), round(float(y0), 1),
                               round(float(x1 - x0), 1), round(float(y1 - y0), 1)),
                       "state": states[name]}
    if return_details:
        details.update(occlusion=mask.astype(bool), inside=inside)
        return img, parts, details
    if return_occlusion:
        return img, parts, mask.astype(bool)
    return img, parts


def _occlude(rng, img, boxes, states, covered=None, paint=draw_occluders):
    """Place and paint occluders; parts they (and ``covered``, a mask of what already covers
    the bike) cover as much as an occluded one become occluded. Returns the union mask."""
    height, width = img.shape[:2]
    state_list = [states[n] for n in PART_NAMES]
    polys, mask, cov = place_occluders(rng, boxes, state_list, width, height, covered)
    if polys:
        paint(rng, img, polys)
    if polys or covered is not None:
        for i, name in enumerate(PART_NAMES):
            if states[name] != STATE_ABSENT and cov[i] >= MIN_OCCLUDED_COVERAGE:
                states[name] = STATE_OCCLUDED
    return mask


def _render_v1(rng, width, height, states, want_details):
    """Flat side view: returns (image, (22, 4) boxes, inside fractions, occluder mask, details).

    ``states`` is updated in place with parts that occluders happen to cover.
    """
    palette = background_palette(rng)
    bike = Bike(rng, states, background=(palette[0] + palette[1]) / 2)

    place, visible, inside = _place_bike(rng, bike, width, height)
    img = draw_background(rng, palette, width, height, ground_y=place.ty + place.scale * 1.0)
    details = {"background": img.copy()} if want_details else {}
    bike.draw(img, place)
    mask = _occlude(rng, img, visible, states)
    return photometric(rng, img), visible, inside, mask, details


def _render_v2(rng, width, height, states, want_details):
    """Photo-like picture; same returns as :func:`_render_v1`."""
    bike = Bike(rng, states, background=(128.0, 128.0, 128.0), style="v2")  # colours: restyle
    pose, angle = _sample_pose(rng)
    lying = pose == "lying"
    H = sample_view(rng, width, height, from_above=lying)
    place, visible, inside, (bx0, bx1, ground_y) = _place_bike_v2(rng, bike, H, width, height,
                                                                  angle)
    visible = np.round(visible, 1)  # as written: cover is measured on the boxes of the file

    cw, ch = canvas_size(width, height)
    # Seen from above, a lying bike has the ground all around it: no wall, props or shadow.
    wall_rows = 0 if lying else \
        int(np.clip(ground_y - rng.uniform(0.05, 1.2) * place.scale, 0.05 * ch, ch))
    # Wall and floor at low resolution: photos of them are soft anyway, and full resolution
    # would cost more than the bike.
    f = _SURFACE_SCALE
    sw, sh, split = -(-cw // f), -(-ch // f), -(-wall_rows // f)
    small = np.empty((sh, sw, 3), np.float32)
    if split > 0:
        small[:split] = draw_wall(rng, split, sw)
    if split < sh:
        small[split:] = draw_floor(rng, sh - split, sw)
        if split > 0:
            small[max(split - 2, 0):split] *= rng.uniform(0.6, 0.9)  # shadow along the skirting
    canvas = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (cw, ch),
                        interpolation=cv2.INTER_LINEAR)
    if not lying:
        draw_props(rng, canvas, ground_y, place.scale)
        draw_ground_shadow(rng, canvas, bx0, bx1, ground_y, place.scale)
    details = {}
    if want_details:
        details["pose"] = (pose, angle)
        details["background"] = warp_image(canvas, H, width, height)
        details["mounts"] = {}
        for name, (prims, _) in bike.mounts.items():
            if states[name] == STATE_ABSENT:
                box = np.array([Outline(prims).bounds(place, H)])
                details["mounts"][name] = tuple(_clip_boxes(box, width, height)[0])
    bike.draw(canvas, place)
    covered = None
    if bike.accessories:  # drawn over the bike: what they cover counts as occlusion
        accessory_mask = np.zeros((ch, cw), np.uint8)
        for prim in bike.accessories:
            draw_prim(canvas, prim, place)
            draw_prim(accessory_mask, prim, place, color=1)
        covered = cv2.warpPerspective(accessory_mask, H, (width, height),
                                      flags=cv2.INTER_NEAREST)
    img = warp_image(canvas, H, width, height)
    mask = _occlude(rng, img, visible, states, covered, paint=draw_occluders_v2)
    # Cut by the picture's border: occluded, as a covered part is (it needs no occluder).
    for i, name in enumerate(PART_NAMES):
        if states[name] != STATE_ABSENT and inside[i] < MIN_INSIDE_VISIBLE:
            states[name] = STATE_OCCLUDED
    return apply_camera(rng, img), visible, inside, mask, details


def _place_bike(rng, bike, width, height):
    """Scale, mirror and position the bike; return (placement, (22, 4) clipped part boxes,
    fraction of each part's box inside the image).

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
    return place, visible, vis_area / np.maximum(area, 1e-9)


def _sample_pose(rng):
    """Draw a pose of POSE_SHARES; return (pose, angle in degrees by which the bike is turned)."""
    u = rng.random()
    if u < POSE_SHARES["upside_down"]:
        return "upside_down", 180.0 + rng.normal(0.0, 3.0)
    if u < POSE_SHARES["upside_down"] + POSE_SHARES["lying"]:
        # People frame a lying bike lengthwise, from either side of it.
        return "lying", rng.uniform(-35.0, 35.0) + (180.0 if rng.random() < 0.3 else 0.0)
    return "standing", 0.0


def _place_bike_v2(rng, bike, H, width, height, angle=0.0):
    """Scale, mirror, turn by ``angle`` degrees and position the bike on the canvas so that,
    warped by ``H``, it has the sampled size and position in the picture. Returns (placement,
    (22, 4) clipped part boxes in the picture, fraction of each part's box inside the picture,
    (x0, x1, ground y) of the whole bike on the canvas: its span and the row it stands on).

    One bike in five is placed partly outside the picture; every part keeps at least
    MIN_INSIDE_ANY of its box inside it.
    """
    outlines = Outline.of_groups([bike.parts[n][0] for n in PART_NAMES])
    ref = 100.0
    whole = Outline([p for prims, _ in bike.context for p in prims] +
                    [p for n in PART_NAMES for p in bike.parts[n][0]])
    flip = 1 if rng.random() < 0.5 else -1
    # Bounds of the mirrored and turned bike, in canonical units.
    bx0, by0, bx1, by1 = (v / ref for v in whole.bounds(Placement(ref, flip, 0.0, 0.0, angle),
                                                        np.eye(3)))
    bw, bh = bx1 - bx0, by1 - by0
    centre = np.array([(bx0 + bx1) / 2, (by0 + by1) / 2])
    Hinv = np.linalg.inv(H)
    probe = warp_points(Hinv, [[width / 2, height / 2], [width / 2 + 1, height / 2],
                               [width / 2, height / 2 + 1]])
    zoom = math.sqrt(abs(np.cross(probe[1] - probe[0], probe[2] - probe[0])))  # canvas px / px
    frac = rng.uniform(0.5, 1.0)
    scale = min(frac * width / bw, 0.95 * height / bh) * zoom
    cut = rng.random() < 0.2
    for attempt in range(12):
        pw, ph = bw * scale / zoom, bh * scale / zoom  # about the bike's size in the picture
        cx = rng.uniform(min(pw / 2, width / 2), max(width - pw / 2, width / 2))
        cy = rng.uniform(min(ph / 2, height / 2), max(height - ph / 2, height / 2))
        if attempt >= 4:  # centred, and smaller at every try
            cx, cy = width / 2, height / 2
        if cut:  # over the left, right or bottom border by 8-30% of the bike's size
            side, over = rng.integers(3), rng.uniform(0.08, 0.3)
            if side < 2:
                cx = pw / 2 - over * pw if side == 0 else width - pw / 2 + over * pw
            else:
                cy = height - ph / 2 + over * ph
        at = warp_points(Hinv, [[cx, cy]])[0]
        place = Placement(scale, flip, at[0] - scale * centre[0], at[1] - scale * centre[1],
                          angle)
        raw = outlines.group_bounds(place, H)
        visible = _clip_boxes(raw, width, height)
        area = (raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1])
        vis_area = (visible[:, 2] - visible[:, 0]) * (visible[:, 3] - visible[:, 1])
        inside = vis_area / np.maximum(area, 1e-9)
        if np.all(inside >= (MIN_INSIDE_ANY if cut else 0.97)) or \
                (attempt >= 4 and np.all(inside >= MIN_INSIDE_VISIBLE)):
            break
        if attempt >= 1:  # perspective made the bike larger than planned: shrink, keep inside
            scale *= 0.85
            cut = False
    # A standing bike stands on its tyres (canonical y = 1); any other on its lowest point.
    ground_y = place.ty + scale * (1.0 if angle == 0.0 else by1)
    return place, visible, inside, (place.tx + scale * bx0, place.tx + scale * bx1, ground_y)


def _clip_boxes(boxes, width, height):
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out

