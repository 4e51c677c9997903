"""Pictures: boxes in state colours, damaged/absent on top, label text, legend, scaling; ground
truth drawn as predictions are."""
import numpy as np
import pytest

from bikestate.constants import PART_NAMES, STATE_COLORS, STATE_IDS, STATE_NAMES
from bikestate.inference import build_report, draw_ground_truth, draw_predictions, \
    draw_verdicts, format_label
from bikestate.inference.visualizer import _legend_layout
from bikestate.synth.render import DEFAULT_STATE_PROBS, render_bike
from bikestate.verdict import OperatingPoint

GREY = 128


def _rgb255(color):
    return np.array(color) * 255


def _close_to(pixels, color, tol=40):
    """Boolean mask of pixels within ``tol`` (per channel) of ``color`` (0-1 RGB)."""
    return (np.abs(pixels.astype(float) - _rgb255(color)) <= tol).all(axis=-1)


def test_label_format():
    assert format_label("saddle", 1, 0.8749) == "saddle · damaged 87%"
    assert format_label("bell", 2, 1.0) == "bell · absent 100%"


def test_boxes_take_their_state_colour_and_legend_is_below(instances_factory):
    h, w = 480, 640
    image = np.full((h, w, 3), GREY, dtype=np.uint8)
    inst = instances_factory((h, w), [
        ("front_wheel", (40, 200, 300, 460), 0.9, {"intact": 0.9}),
        ("saddle", (350, 60, 600, 300), 0.9, {"damaged": 0.9}),
    ])
    out = draw_predictions(image, inst, PART_NAMES)
    _, columns, row_h, _ = _legend_layout(h, w)
    assert columns == 4
    assert out.shape == (h + row_h, w, 3)
    # Right edge of the saddle box (no label there) is red, of the wheel box green.
    assert _close_to(out[150:250, 596:604], STATE_COLORS[1]).any()
    assert not _close_to(out[150:250, 596:604], STATE_COLORS[0]).any()
    assert _close_to(out[300:400, 296:304], STATE_COLORS[0], tol=70).any()
    # The photo away from boxes is untouched.
    assert (out[20:40, 20:40] == GREY).all()
    # The legend strip shows a swatch of every state colour, in order from left to right.
    xs = _legend_swatches_in_order(out[h:])
    assert xs == sorted(xs)


def test_verdict_picture_shows_the_report_not_the_detections(instances_factory):
    """One box per part found, in its verdict's colour: here the calibrated presence threshold
    turns a saddle whose most probable state is intact into absent, and a second, weaker saddle
    detection (damaged) does not speak for the part."""
    h, w = 480, 640
    image = np.full((h, w, 3), GREY, dtype=np.uint8)
    inst = instances_factory((h, w), [
        ("saddle", (100, 60, 300, 200), 0.9, {"intact": 0.7, "absent": 0.3}),
        ("saddle", (420, 280, 600, 440), 0.5, {"damaged": 0.9}),
        ("front_wheel", (40, 220, 300, 460), 0.9, {"intact": 0.9}),
    ])
    point = OperatingPoint(0.3, 0.75, presence="state")
    report = build_report("bike.jpg", inst, PART_NAMES, point)
    verdicts = {p["part"]: p["verdict"] for p in report["parts"]}
    assert verdicts["saddle"] == "absent" and verdicts["front_wheel"] == "intact"
    out = draw_verdicts(image, report, legend=False)
    assert out.shape == (h, w, 3)
    # The speaking saddle's right edge is in the absent colour, not its argmax's (intact).
    assert _close_to(out[120:190, 296:304], STATE_COLORS[STATE_IDS["absent"]], tol=30).any()
    assert not _close_to(out[120:190, 296:304], STATE_COLORS[STATE_IDS["intact"]], tol=30).any()
    assert _close_to(out[300:440, 296:304], STATE_COLORS[STATE_IDS["intact"]], tol=70).any()
    # The weaker saddle detection is not drawn; draw_predictions shows it (damaged, red).
    assert (out[290:440, 590:610] == GREY).all()
    every = draw_predictions(image, inst, PART_NAMES, legend=False)
    assert _close_to(every[290:440, 596:604], STATE_COLORS[STATE_IDS["damaged"]], tol=30).any()
    # Nothing found, nothing drawn: the photo itself.
    nothing = build_report("bike.jpg", instances_factory((h, w), []), PART_NAMES, point)
    np.testing.assert_array_equal(draw_verdicts(image, nothing, legend=False), image)


def test_damaged_is_drawn_over_intact(instances_factory):
    h, w = 240, 320
    image = np.full((h, w, 3), GREY, dtype=np.uint8)
    # Same box twice: the damaged outline must be the one visible (it is drawn last, opaque).
    inst = instances_factory((h, w), [
        ("back_light", (100, 100, 200, 200), 0.9, {"damaged": 0.9}),
        ("front_light", (100, 100, 200, 200), 0.95, {"intact": 0.9}),
    ])
    out = draw_predictions(image, inst, PART_NAMES, legend=False)
    right_edge = out[150:190, 197:203]
    assert _close_to(right_edge, STATE_COLORS[1], tol=30).any()
    assert not _close_to(right_edge, STATE_COLORS[0], tol=30).any()


def test_score_threshold_hides_weak_detections(instances_factory):
    image = np.full((240, 320, 3), GREY, dtype=np.uint8)
    inst = instances_factory((240, 320), [("saddle", (100, 60, 300, 200), 0.3, {"damaged": 0.9})])
    shown = draw_predictions(image, inst, PART_NAMES, score_thresh=0.2, legend=False)
    hidden = draw_predictions(image, inst, PART_NAMES, score_thresh=0.5, legend=False)
    assert (hidden == GREY).all()
    assert _close_to(shown, STATE_COLORS[1]).any()


def test_large_photo_is_drawn_scaled_down(instances_factory):
    h, w = 3000, 4000
    image = np.full((h, w, 3), GREY, dtype=np.uint8)
    inst = instances_factory((h, w), [("saddle", (2000, 1000, 3000, 2000), 0.9, {"absent": 0.9})])
    out = draw_predictions(image, inst, PART_NAMES, max_size=800)
    scale = 800 / 4000
    _, _, row_h, _ = _legend_layout(600, 800)  # the legend is laid out for the drawn size
    assert out.shape == (600 + row_h, 800, 3)
    # The box's right edge lands at x = 3000 * scale.
    column = out[int(1400 * scale):int(1900 * scale), int(3000 * scale) - 3:int(3000 * scale) + 3]
    assert _close_to(column, STATE_COLORS[2]).any()


def test_narrow_image_gets_a_two_row_legend():
    font, columns, row_h, width = _legend_layout(320, 200)
    assert columns == 2 and font >= 6 and width == 200
    assert len(STATE_NAMES) == 4


def _legend_swatches_in_order(strip):
    xs = []
    for color in STATE_COLORS:
        hits = np.flatnonzero(_close_to(strip, color, tol=10).any(axis=0))
        assert len(hits), f"no {color} swatch in the legend"
        xs.append(hits.min())
    return xs


@pytest.mark.parametrize("h, w", [(1, 1), (500, 3), (3, 500), (1, 2000), (3000, 1), (2, 30)])
def test_any_size_and_aspect_ratio_is_drawn_with_a_legend(instances_factory, h, w):
    image = np.full((h, w, 3), GREY, dtype=np.uint8)
    inst = instances_factory((h, w), [
        ("saddle", (0, 0, w, h), 0.9, {"damaged": 0.9}),
        ("bell", (0, 0, w / 2, h / 2), 0.8, {"intact": 0.9}),
    ])
    out = draw_predictions(image, inst, PART_NAMES)
    # The photo is drawn with its longest side between 256 (tiny photos are enlarged) and
    # 1600; the legend below it is never narrower than its four names need.
    scale = min(max(256 / max(h, w), 1.0), 1600 / max(h, w))
    drawn_h, drawn_w = max(1, round(h * scale)), max(1, round(w * scale))
    _, columns, row_h, legend_w = _legend_layout(drawn_h, drawn_w)
    assert legend_w >= drawn_w
    assert out.shape == (drawn_h + 4 // columns * row_h, legend_w, 3)
    # (The box's outline along the photo's bottom edge reaches a few pixels into the strip.)
    xs = _legend_swatches_in_order(out[drawn_h + 4:])
    assert xs[:columns] == sorted(xs[:columns])
    # The damaged box around the whole photo is drawn.
    assert _close_to(out[:drawn_h, :drawn_w], STATE_COLORS[1]).any()


def test_tiny_photo_is_enlarged_pixel_for_pixel(instances_factory):
    image = np.array([[[255, 0, 0], [0, 0, 255]], [[0, 255, 0], [GREY, GREY, GREY]]], np.uint8)
    out = draw_predictions(image, instances_factory((2, 2), []), PART_NAMES, legend=False)
    assert out.shape == (256, 256, 3)
    assert (out[:128, :128] == [255, 0, 0]).all() and (out[128:, 128:] == GREY).all()


def test_labels_of_overlapping_parts_do_not_cover_each_other():
    from detectron2.utils.visualizer import Visualizer

    from bikestate.inference.visualizer import _place_labels

    vis = Visualizer(np.full((480, 640, 3), GREY, dtype=np.uint8))
    box = np.array([200.0, 200.0, 400.0, 350.0])
    texts = [format_label(name, s, 0.5) for name, s in
             [("front_wheel", 1), ("front_mudguard", 0), ("front_light", 0), ("dynamo", 3)]]
    _place_labels(vis, [(box, t, STATE_COLORS[0]) for t in texts], photo_height=480,
                  photo_width=640)
    renderer = vis.output.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in vis.output.ax.texts]
    assert [t.get_text() for t in vis.output.ax.texts] == texts
    for i in range(len(extents)):
        for j in range(i):
            assert not extents[i].overlaps(extents[j]), (texts[i], texts[j])
    # The first (most important) label keeps detectron2's spot: the box's top-left corner.
    x, y = vis.output.ax.texts[0].get_position()
    assert abs(x - 200) < 3 and abs(y - 200) < 3


def test_ground_truth_is_drawn_as_predictions_made_with_certainty(instances_factory):
    h, w = 480, 640
    image, parts = render_bike(np.random.default_rng([0, 3]), w, h, DEFAULT_STATE_PROBS,
                               style="v2")
    boxes = {name: (x, y, x + bw, y + bh) for name, part in parts.items()
             for x, y, bw, bh in [part["box"]]}
    truth = [("front_wheel", "damaged"), ("back_wheel", "intact"), ("saddle", "absent")]
    out = draw_ground_truth(image, [boxes[p] for p, _ in truth],
                            [PART_NAMES.index(p) for p, _ in truth],
                            [STATE_IDS[s] for _, s in truth], PART_NAMES)
    # The legend strip below the photo, as for predictions.
    _, columns, row_h, _ = _legend_layout(h, w)
    assert columns == 4 and out.shape == (h + row_h, w, 3)
    xs = _legend_swatches_in_order(out[h:])
    assert xs == sorted(xs)
    # The right edge of the damaged front wheel (its label is in the top-left corner) is red.
    x0, y0, x1, y1 = (round(v) for v in boxes["front_wheel"])
    assert _close_to(out[y0 + 40:y1 - 10, x1 - 3:x1 + 3], STATE_COLORS[1], tol=30).any()
    assert not _close_to(out[y0 + 40:y1 - 10, x1 - 3:x1 + 3], STATE_COLORS[0], tol=30).any()

    predicted = draw_predictions(image, instances_factory(
        (h, w), [(p, boxes[p], 1.0, {s: 1.0}) for p, s in truth]), PART_NAMES)
    assert predicted.shape == out.shape
    # Same outlines (right and bottom edges, below the labels: the wheels' are in their top-left
    # corner, the saddle's above it) and the same legend; only the labels differ, the ground
    # truth's having no confidence.
    for part, _ in truth:
        x0, y0, x1, y1 = (round(v) for v in boxes[part])
        top = y0 + 2 if part == "saddle" else y0 + 30
        for edge in (np.s_[top:y1 - 2, x1 - 3:x1 + 4], np.s_[y1 - 3:y1 + 4, x0 + 2:x1 - 2]):
            np.testing.assert_array_equal(out[edge], predicted[edge], err_msg=part)
    np.testing.assert_array_equal(out[h + 4:], predicted[h + 4:])
    assert (out[:h] != predicted[:h]).any(axis=-1).sum() > 100


@pytest.mark.parametrize("h, w", [(20, 30), (480, 640), (3000, 40)])
def test_ground_truth_has_the_size_of_predictions(instances_factory, h, w):
    image = np.full((h, w, 3), GREY, dtype=np.uint8)
    empty = draw_ground_truth(image, np.zeros((0, 4)), [], [], PART_NAMES)
    np.testing.assert_array_equal(empty, draw_predictions(image, instances_factory((h, w), []),
                                                          PART_NAMES))


def test_ground_truth_needs_a_class_and_a_state_per_box():
    image = np.full((240, 320, 3), GREY, dtype=np.uint8)
    with pytest.raises(ValueError, match="2 boxes, 2 classes and 1 states"):
        draw_ground_truth(image, [(0, 0, 10, 10), (5, 5, 20, 20)], [0, 1], [2], PART_NAMES)
