"""Pictures of verdicts, of predictions and of ground truth: each part's box coloured by its
state, with a legend.

:func:`draw_verdicts` draws what the inspection report says (one box per part that was found,
labelled with its verdict), the picture ``tools/predict.py`` and the service show;
:func:`draw_predictions` draws every detection above a score threshold (for looking at the
model); :func:`draw_ground_truth` draws annotations.

Built on detectron2's :class:`Visualizer` (its fonts scale with the image, so labels stay
legible from 640x480 to 12-megapixel photos). What a bike shop needs to see first are the parts
to fix, so damaged and absent parts are drawn last (on top of the others) and with an opaque
box, while intact and occluded parts keep detectron2's half-transparent boxes.
"""
import cv2
import matplotlib as mpl
import numpy as np
from detectron2.utils.visualizer import _SMALL_OBJECT_AREA_THRESH, Visualizer

from ..constants import STATE_COLORS, STATE_NAMES
from .detections import as_detections
from .report import ATTENTION_VERDICTS

# Parts drawn first (underneath): states that need no action.
_CALM_STATES = tuple(i for i, s in enumerate(STATE_NAMES) if s not in ATTENTION_VERDICTS)
# Drawn last (on top), absent before damaged so that damaged, the rarest, is topmost.
_ATTENTION_STATES = tuple(STATE_NAMES.index(s) for s in reversed(ATTENTION_VERDICTS)
                          if s in STATE_NAMES)

# Longest side of the rendered picture; bigger photos are drawn scaled down (boxes, text and
# lines scale with them) because a 12-megapixel overlay is slow to render and to open.
DEFAULT_MAX_SIZE = 1600
# Longest side below which a photo is drawn enlarged (each pixel a block): boxes and labels
# on a 1x1 or 20x30 photo would otherwise be invisible.
DEFAULT_MIN_SIZE = 256
LEGEND_BACKGROUND = (32, 32, 32)
MIN_LEGEND_FONT = 8  # points: the legend of a very narrow photo widens the picture instead


def format_label(part_name, state, confidence=None):
    """The label of a box, e.g. ``saddle · damaged 87%`` (confidence as in the report), or
    ``saddle · damaged`` without a confidence (ground truth). ``state``: an id or a name."""
    state_name = state if isinstance(state, str) else STATE_NAMES[state]
    if confidence is None:
        return f"{part_name} · {state_name}"
    return f"{part_name} · {state_name} {round(100 * float(confidence)):d}%"


def _legend_layout(height, width):
    """(font size in points, columns, row height in image pixels, strip width) of the legend.

    One row of four at Visualizer's default font size when it fits the width, else two rows
    of two, shrinking the font for narrow images but not below :data:`MIN_LEGEND_FONT`. The
    strip is as wide as the image, or wider for an image too narrow even for that (a 3x500
    photo): the picture then gets a background margin right of the photo.
    """
    font = max(np.sqrt(height * width) // 90, 10)  # Visualizer's default font size rule
    px_per_pt = mpl.rcParams["figure.dpi"] / 72
    longest = max(len(name) for name in STATE_NAMES)

    def slot_width(font_pt):  # swatch + gap + longest name, at 0.6 em per character
        return font_pt * px_per_pt * (1.6 + 0.62 * longest) + 8

    columns = len(STATE_NAMES)
    if slot_width(font) * columns > width:
        columns = 2
        font = max(min(font, (width / columns - 8) / (px_per_pt * (1.6 + 0.62 * longest))),
                   MIN_LEGEND_FONT)
    strip_width = max(width, int(np.ceil(slot_width(font) * columns)))
    return font, columns, int(round(font * px_per_pt * 1.9)), strip_width


def draw_predictions(image_rgb, instances, part_names, *, score_thresh=0.0, legend=True,
                     max_size=DEFAULT_MAX_SIZE, min_size=DEFAULT_MIN_SIZE, font_size_scale=1.0):
    """Draw predicted parts on an image.

    Args:
        image_rgb (np.ndarray): uint8 (H, W, 3) RGB image, the frame of ``instances``.
        instances (Instances or Detections): predictions in image pixels: N boxes XYXY,
            scores (N,), classes (N,), states (N,) and state probabilities (N, 4) (see
            :mod:`.detections`).
        part_names (Sequence[str]): class names by contiguous id.
        score_thresh (float): detections scoring below are not drawn.
        legend (bool): add a strip below the image naming the four state colours.
        max_size (int or None): longest side of the drawn photo; larger images are scaled
            down.
        min_size (int or None): images whose longest side is shorter are scaled up (nearest
            neighbour) to this longest side.
        font_size_scale (float): extra factor on detectron2's image-size-based font size.

    Returns:
        np.ndarray: uint8 RGB image of shape (H' + L, max(W', S), 3): the image scaled into
        [``min_size``, ``max_size``] (H', W'), plus the legend strip of height L and width S when
        ``legend`` (S > W' only for images too narrow for the legend, e.g. 3x500; the photo is
        then on the left over a dark margin).

    Works for any image size and aspect ratio, 1x1 and 1x10000 included.

    Each box is labelled ``<part> · <state> <confidence>%`` where confidence is the detection
    score times the probability of the predicted state (the report's confidence).
    """
    detections = as_detections(instances)
    detections = detections[detections.scores >= score_thresh]
    states = detections.states
    confidence = detections.scores
    if len(states):
        confidence = confidence * detections.state_scores[np.arange(len(states)), states]
    labels = [format_label(part_names[c], s, p)
              for c, s, p in zip(detections.classes, states, confidence)]
    # Within a state, the labels of the surest detections get the best free spots.
    return _draw(image_rgb, detections.boxes, states, labels, rank=-confidence, legend=legend,
                 max_size=max_size, min_size=min_size, font_size_scale=font_size_scale)


def draw_verdicts(image_rgb, report, *, legend=True, max_size=DEFAULT_MAX_SIZE,
                  min_size=DEFAULT_MIN_SIZE):
    """Draw the verdicts of an inspection report on its photo.

    Args:
        image_rgb (np.ndarray): uint8 (H, W, 3) RGB image, the photo ``report`` is about.
        report (dict): one image's report (:func:`~bikestate.inference.build_report`): per part
            its ``verdict``, ``confidence`` and ``box`` [x, y, w, h] (None when not found).
        legend, max_size, min_size: as for :func:`draw_predictions`.

    Returns:
        np.ndarray: uint8 RGB image, of the shape :func:`draw_predictions` gives.

    One box per part the report found (the detection that speaks for it), labelled
    ``<part> · <verdict> <confidence>%`` exactly as the report states it; parts not found are
    not drawn. The verdict can differ from the detection's most probable state (the calibrated
    presence threshold and state biases), so this picture, not :func:`draw_predictions`, is the
    one that agrees with the report.
    """
    shown = [p for p in report["parts"] if p["box"] is not None and p["verdict"] in STATE_NAMES]
    boxes = np.array([p["box"] for p in shown], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
    states = np.array([STATE_NAMES.index(p["verdict"]) for p in shown], dtype=np.int64)
    confidence = np.array([p["confidence"] for p in shown], dtype=np.float64)
    labels = [format_label(p["part"], p["verdict"], p["confidence"]) for p in shown]
    return _draw(image_rgb, boxes, states, labels, rank=-confidence, legend=legend,
                 max_size=max_size, min_size=min_size)


def draw_ground_truth(image_rgb, boxes, classes, states, part_names, *, legend=True,
                      max_size=DEFAULT_MAX_SIZE, min_size=DEFAULT_MIN_SIZE):
    """Draw annotated parts on an image, as :func:`draw_predictions` draws predictions.

    Args:
        image_rgb (np.ndarray): uint8 (H, W, 3) RGB image, the frame of ``boxes``.
        boxes (array-like): (N, 4) XYXY boxes in image pixels.
        classes (array-like): (N,) part ids (contiguous).
        states (array-like): (N,) state ids.
        part_names (Sequence[str]): class names by contiguous id.
        legend, max_size, min_size: as for :func:`draw_predictions`.

    Returns:
        np.ndarray: uint8 RGB image, of the shape :func:`draw_predictions` gives for the same
        image and options.

    Each box is labelled ``<part> · <state>`` (no confidence), with the colours, drawing order
    and label placement of :func:`draw_predictions`: a part annotated with a state looks as
    it would if the model predicted it with certainty.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    states = np.asarray(states, dtype=np.int64).reshape(-1)
    if not len(boxes) == len(classes) == len(states):
        raise ValueError(f"{len(boxes)} boxes, {len(classes)} classes and {len(states)} states: "
                         "one of each per part")
    labels = [format_label(part_names[c], s) for c, s in zip(classes, states)]
    # Within a state, labels take their spots in annotation order.
    return _draw(image_rgb, boxes, states, labels, rank=np.arange(len(states)), legend=legend,
                 max_size=max_size, min_size=min_size)


def _draw(image_rgb, boxes, states, labels, rank, *, legend, max_size, min_size,
          font_size_scale=1.0):
    """The drawing of :func:`draw_predictions` and :func:`draw_ground_truth`.

    Args:
        image_rgb (np.ndarray): uint8 (H, W, 3) RGB image.
        boxes (np.ndarray): float (N, 4) XYXY boxes in the pixels of ``image_rgb``.
        states (np.ndarray): int (N,) state of each box: its colour and drawing order.
        labels (Sequence[str]): N box labels.
        rank (np.ndarray): (N,) order in which labels of the same importance pick their spots,
            lowest first.
        legend, max_size, min_size, font_size_scale: as for :func:`draw_predictions`.

    Returns:
        np.ndarray: uint8 RGB image, shaped as :func:`draw_predictions` documents.
    """
    image_rgb = np.asarray(image_rgb)
    height, width = image_rgb.shape[:2]
    scale = 1.0
    if max_size and max(height, width) > max_size:
        # Shrink the photo ourselves (area averaging): matplotlib drawing a 12-megapixel
        # image at a reduced scale takes seconds and aliases; text and lines follow the
        # smaller size through Visualizer's font rule.
        scale = max_size / max(height, width)
    elif min_size and max(height, width) < min_size:
        scale = min_size / max(height, width)
    if scale != 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image_rgb = cv2.resize(image_rgb, (width, height),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)

    canvas = image_rgb
    canvas_width = width
    if legend:
        # The legend goes in a strip below the photo, so it never hides a part.
        legend_font, legend_columns, row_h, canvas_width = _legend_layout(height, width)
        legend_h = row_h * int(np.ceil(len(STATE_NAMES) / legend_columns))
        canvas = np.empty((height + legend_h, canvas_width, 3), dtype=np.uint8)
        canvas[:] = LEGEND_BACKGROUND
        canvas[:height, :width] = image_rgb

    vis = Visualizer(canvas, metadata=None, font_size_scale=font_size_scale)

    boxes = boxes * scale
    tags = []
    for group in (_CALM_STATES,) + tuple((s,) for s in _ATTENTION_STATES):
        idx = np.flatnonzero(np.isin(states, group))
        if not len(idx):
            continue
        colors = [STATE_COLORS[states[i]] for i in idx]
        vis.overlay_instances(boxes=boxes[idx], assigned_colors=colors)
        if group != _CALM_STATES:
            for i in idx:  # an opaque second outline over the half-transparent one
                vis.draw_box(boxes[i], alpha=1.0, edge_color=STATE_COLORS[states[i]])
        for i in idx:
            tags.append((_label_priority(states[i]), rank[i], boxes[i], labels[i],
                         STATE_COLORS[states[i]]))
    # Labels that matter most get the best free spots first: damaged, absent, then the rest.
    tags.sort(key=lambda tag: tag[:2])
    _place_labels(vis, [tag[2:] for tag in tags], photo_height=height, photo_width=canvas_width)

    if legend:
        _draw_legend(vis, top=height, row_height=row_h, width=canvas_width, font=legend_font,
                     columns=legend_columns)
    return vis.get_output().get_image()


def _label_priority(state):
    name = STATE_NAMES[state]
    return ATTENTION_VERDICTS.index(name) if name in ATTENTION_VERDICTS else len(
        ATTENTION_VERDICTS)


def text_color(background):
    """Black or white, whichever reads better on ``background`` (RGB 0-1)."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return "black" if luminance > 0.5 else "white"


def _overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _place_labels(vis, labels, photo_height, photo_width):
    """Draw label tags ``(box, text, colour)`` in order, each where it hides no earlier tag.

    A tag is filled with its state's colour: detectron2 writes labels in a pale tint of the box
    colour on black, which makes damaged (pink) and absent (pale orange) hard to tell apart.
    The font follows detectron2's rule (larger for taller boxes, from a default that grows with
    the image) but never goes below 0.9x the default, so labels of small parts stay legible.
    With 22 parts on a bike, detectron2's fixed spot (the box's top-left corner) piles labels
    on each other; each tag here takes the first of a few spots around its box (inside or
    outside a corner) that does not cover a tag already placed, else the least covered one.
    """
    out = vis.output
    renderer = out.canvas.get_renderer()
    px_per_pt = out.dpi / 72
    placed = []
    for rank, (box, text, color) in enumerate(labels):
        x0, y0, x1, y1 = (float(v) for v in box)
        height_ratio = (y1 - y0) / np.sqrt(out.height * out.width)
        font_size = (np.clip((height_ratio - 0.02) / 0.08 + 1, 1.8, 2) * 0.5
                     * vis._default_font_size)
        pad = 0.7  # points, as detectron2's draw_text
        artist = out.ax.text(
            0, 0, text, size=font_size * out.scale, family="sans-serif",
            bbox={"facecolor": color, "alpha": 0.85, "pad": pad, "edgecolor": "none"},
            verticalalignment="top", horizontalalignment="left", color=text_color(color),
            zorder=10 + (len(labels) - rank) / (len(labels) + 1),  # earlier tags on top
        )
        extent = artist.get_window_extent(renderer)
        w = extent.width + 2 * pad * px_per_pt
        h = extent.height + 2 * pad * px_per_pt
        small = (y1 - y0) * (x1 - x0) < _SMALL_OBJECT_AREA_THRESH or y1 - y0 < 40
        inside = [(x0, y0), (x0, y1 - h), (x1 - w, y0)]
        outside = [(x0, y0 - h), (x0, y1), (x1 - w, y0 - h), (x1 - w, y1)]
        best = None
        for x, y in (outside + inside) if small else (inside[:1] + outside + inside[1:]):
            x = min(max(x, 0.0), max(photo_width - w, 0.0))
            y = min(max(y, 0.0), max(photo_height - h, 0.0))
            rect = (x, y, x + w, y + h)
            cost = sum(_overlap(rect, other) for other in placed)
            if best is None or cost < best[0]:
                best = (cost, rect)
            if cost == 0:
                break
        rect = best[1]
        placed.append(rect)
        artist.set_position((rect[0] + pad * px_per_pt, rect[1] + pad * px_per_pt))


def _draw_legend(vis, top, row_height, width, font, columns):
    """Coloured swatches with the state names, in the strip below row ``top`` of the image."""
    swatch = row_height * 0.5
    slot = width / columns
    for i, (name, color) in enumerate(zip(STATE_NAMES, STATE_COLORS)):
        row, column = divmod(i, columns)
        x0 = column * slot + row_height * 0.3
        y_mid = top + (row + 0.5) * row_height
        square = np.array([[x0, y_mid - swatch / 2], [x0 + swatch, y_mid - swatch / 2],
                           [x0 + swatch, y_mid + swatch / 2], [x0, y_mid + swatch / 2]])
        vis.draw_polygon(square, color=color, edge_color=color, alpha=1.0)
        vis.output.ax.text(
            x0 + swatch * 1.4, y_mid, name, size=font * vis.output.scale, family="sans-serif",
            color="white", verticalalignment="center", horizontalalignment="left", zorder=10,
        )
