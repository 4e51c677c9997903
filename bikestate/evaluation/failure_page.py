"""The failure analysis as people see it: crops of the worst cases, a heat map, one HTML page.

:func:`write_failure_page` turns :func:`bikestate.evaluation.failures.analyze_failures`'s data
into an output folder:

* ``failures.html``: one self-contained page (CSS inline, every picture embedded as base64, no
  script, no external asset): the verdict rule and data it is about, a summary table (failures
  per kind, out of how many could fail that way, the parts accounting for most of them), the
  parts x kinds heat map, then one section per kind with its most confident cases first, each a
  crop with context, the ground truth (dashed) and the verdict's box (solid, labelled like the
  prediction pictures: ``saddle · intact 87%``), the image name and the rule's numbers;
* ``failures.json``: the same data for scripts (every failure, not only those drawn; drawn
  ones name their crop);
* ``failure_heatmap.png`` and ``crops/<kind>_<rank>.jpg``.

Colours are the prediction pictures' (:data:`bikestate.constants.STATE_COLORS`), drawn with
detectron2's :class:`Visualizer` as :mod:`bikestate.inference.visualizer` does.
"""
import base64
import datetime
import glob
import html
import io
import json
import logging
import os

import cv2
import numpy as np
from detectron2.utils.visualizer import Visualizer
from tqdm import tqdm

from ..constants import NOT_FOUND, STATE_COLORS, STATE_NAMES
from ..inference.images import read_image
from ..inference.visualizer import format_label, text_color
from ..utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .failures import FAILURE_KINDS
from .plots import plot_failure_heatmap

__all__ = ["draw_case", "render_html", "write_failure_page", "log_failures_to_wandb",
           "PAGE_FILE", "JSON_FILE", "HEATMAP_FILE", "CROPS_DIR"]

logger = logging.getLogger(__name__)

PAGE_FILE = "failures.html"
JSON_FILE = "failures.json"
HEATMAP_FILE = "failure_heatmap.png"
CROPS_DIR = "crops"
# Longest side of a drawn crop in pixels: big enough to judge a part, small enough for 100 on
# one page (about 15 kB each as JPEG).
CROP_SIZE = 300
# Context around the boxes of a case: this share of their extent on each side, at least
# MIN_CONTEXT pixels of the original photo, so a bell is shown with its handlebar.
CONTEXT = 0.6
MIN_CONTEXT = 40
JPEG_QUALITY = 88
# A detection below the score threshold (a part not found) is drawn in grey.
BELOW_THRESHOLD_COLOR = (0.6, 0.6, 0.6)


def _crop_region(case, height, width):
    """(x0, y0, x1, y1) integer region of the photo shown for a case: its boxes with context,
    square where the photo is big enough (so the cards of a page line up), moved inside the
    photo at its edges rather than cut (a part at the border keeps its context)."""
    boxes = list(case["gt_boxes"]) + ([case["box"]] if case["box"] is not None else [])
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return 0, 0, width, height
    x0, y0 = boxes[:, :2].min(axis=0)
    x1, y1 = boxes[:, 2:].max(axis=0)
    extent = max(x1 - x0, y1 - y0)
    side = int(np.ceil(extent + 2 * max(CONTEXT * extent, MIN_CONTEXT)))
    w, h = min(side, width), min(side, height)
    left = int(np.clip(round((x0 + x1 - w) / 2), 0, width - w))
    top = int(np.clip(round((y0 + y1 - h) / 2), 0, height - h))
    return left, top, left + w, top + h


def draw_case(image_rgb, case, state_names=STATE_NAMES, crop_size=CROP_SIZE):
    """The picture of one failure: the part's surroundings with truth and verdict drawn.

    Args:
        image_rgb (ndarray): (H, W, 3) uint8 RGB photo, the frame of the case's boxes.
        case (dict): one case of :func:`~bikestate.evaluation.failures.analyze_failures`.
        crop_size (int): longest side of the result.
    Returns:
        ndarray: (h, w, 3) uint8 RGB, max(h, w) = ``crop_size``: the ground-truth boxes dashed
        in the colour of the true state (tag ``truth · damaged``), the speaking detection solid
        in the verdict's colour (tag ``saddle · intact 87%``, the report's confidence), or
        grey for a detection below the score threshold (``not found · score 0.31``).
    """
    height, width = image_rgb.shape[:2]
    x0, y0, x1, y1 = _crop_region(case, height, width)
    crop = image_rgb[y0:y1, x0:x1]
    scale = crop_size / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    vis = Visualizer(crop, metadata=None)

    def frame(box):
        return (np.asarray(box, dtype=np.float64) - [x0, y0, x0, y0]) * scale

    names = list(state_names)
    tags = []
    truth_color = STATE_COLORS[names.index(case["gt_state"])]
    for box in case["gt_boxes"]:
        vis.draw_box(frame(box), alpha=1.0, edge_color=truth_color, line_style="--")
    if case["gt_boxes"]:
        tags.append((frame(case["gt_boxes"][0]), f"truth · {case['gt_state']}", truth_color,
                     "above"))
    if case["box"] is not None:
        if case["verdict"] == NOT_FOUND:
            color, text = BELOW_THRESHOLD_COLOR, f"not found · score {case['score']:.2f}"
        else:
            color = STATE_COLORS[names.index(case["verdict"])]
            text = format_label(case["part"], names.index(case["verdict"]), case["confidence"])
        vis.draw_box(frame(case["box"]), alpha=1.0, edge_color=color)
        tags.append((frame(case["box"]), text, color, "below"))
    _draw_tags(vis, tags, size)
    return vis.get_output().get_image()


def _draw_tags(vis, tags, size):
    """Label tags filled with their box's colour: the truth's above its box, the verdict's
    below its box (so the two never cover each other when the boxes coincide), inside the
    picture."""
    out = vis.output
    renderer = out.canvas.get_renderer()
    font = vis._default_font_size * out.scale
    for box, text, color, where in tags:
        artist = out.ax.text(0, 0, text, size=font, family="sans-serif", zorder=10,
                             bbox={"facecolor": color, "alpha": 0.9, "pad": 1.0,
                                   "edgecolor": "none"},
                             color=text_color(color),
                             verticalalignment="top", horizontalalignment="left")
        extent = artist.get_window_extent(renderer)
        w, h = extent.width + 4, extent.height + 4
        y = box[1] - h if where == "above" else box[3] + 2
        if y < 0 or y + h > size[1]:  # no room outside the box: inside its top / bottom edge
            y = box[1] + 2 if where == "above" else box[3] - h - 2
        x = min(max(box[0], 2.0), max(size[0] - w, 0.0))
        artist.set_position((x + 2, min(max(y, 0.0), max(size[1] - h, 0.0)) + 2))


def _jpeg(image_rgb):
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("could not encode a crop as JPEG")
    return data.tobytes()


def _data_uri(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _fmt(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pill(name, state_names):
    """A state (or not_found) name on its colour, as the boxes are drawn."""
    names = list(state_names)
    color = STATE_COLORS[names.index(name)] if name in names else BELOW_THRESHOLD_COLOR
    return (f"<span class=\"pill\" style=\"background:{_css_color(color)};color:"
            f"{text_color(color)}\">{html.escape(name)}</span>")


def _caption(case, state_names):
    """What a case's card says under its picture: where, what, and the rule's numbers (the
    figure it is ranked by in bold)."""
    esc = html.escape

    def figure(label, value, key):
        text = f"{label} {value:.2f}"
        return f"<b>{text}</b>" if key == case["ranked_by"] else text

    lines = [f"<span class=\"rank\">#{case['rank']}</span> "
             f"<span class=\"name\">{esc(case['file_name'])}</span>",
             f"<b>{esc(case['part'])}</b>: truth {_pill(case['gt_state'], state_names)} "
             f"verdict {_pill(case['verdict'], state_names)}"]
    if case["box"] is None:
        lines.append(f"no detection of this part ({esc(case['ranked_by'])} 0)")
    else:
        lines.append(" · ".join([figure("score", case["score"], "best score seen"),
                                 figure("P(present)", case["p_present"], "P(present)"),
                                 f"IoU {case['iou']:.2f}"]))
        probs = []
        for name in state_names:
            text = f"{esc(name)} {case['p_state'][name]:.2f}"
            ranked = case["ranked_by"] == "confidence" and name == case["verdict"]
            probs.append(f"<b>{text}</b>" if ranked else text)
        lines.append("P(state): " + " · ".join(probs))
    return "<br>".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1400px;
padding:16px;color:#222;background:#fafafa}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.4em 0 .3em;border-bottom:1px solid
#ccc;padding-bottom:.2em}p.meta{color:#555;margin:.2em 0;font-size:.92em}
nav{display:flex;flex-wrap:wrap;gap:.2em 1em}nav a{white-space:nowrap}
table.summary{border-collapse:collapse;font-size:.92em;margin:.6em 0}
table.summary th,table.summary td{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}table.summary td.n{text-align:right}table.summary th{background:#eee}
img.heatmap{max-width:100%;border:1px solid #ddd;background:#fff}
.cases{display:flex;flex-wrap:wrap;gap:12px}
figure.case{margin:0;width:300px;background:#fff;border:1px solid #ddd;border-radius:4px;
overflow:hidden}figure.case img{display:block;width:300px;height:auto;background:#000}
figcaption{padding:6px 8px;font-size:.8em;line-height:1.35}
figcaption .name{font-weight:600;word-break:break-all}.rank{color:#888}
.pill{padding:0 .35em;border-radius:3px;font-weight:600}.none{color:#777;font-style:italic}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-.05em}
"""


def render_html(analysis, crops, heatmap_png, meta, state_names=STATE_NAMES):
    """The page as one HTML string (no external asset).

    Args:
        analysis (dict): :func:`~bikestate.evaluation.failures.analyze_failures`'s output.
        crops (dict): (kind, rank) -> JPEG bytes of the cases drawn.
        heatmap_png (bytes): the heat map.
        meta (dict): ``title``, ``dataset``, ``weights``, ``rule`` (the operating point's
            description) and ``generated`` (time), shown at the top.
    """
    esc = html.escape
    rule = meta.get("rule") or {}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(meta.get('title', 'Failure analysis'))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(meta.get('title', 'Failure analysis'))}</h1>",
        f"<p class=\"meta\">Dataset <b>{esc(str(meta.get('dataset', '')))}</b>: "
        f"{analysis['num_images']} images, {analysis['num_pairs']} image-part pairs, "
        f"{analysis['num_failures']} wrong verdicts. Model: {esc(str(meta.get('weights', '')))}"
        "</p>",
        f"<p class=\"meta\">Verdict rule (as the inspection report and the evaluator): "
        f"{esc(str(rule.get('rule', '')))}; score threshold {_fmt(rule.get('score_thresh'))}, "
        f"presence threshold {_fmt(rule.get('presence_thresh'))} "
        f"(from {esc(str(rule.get('source', 'default')))}). Boxes: ground truth dashed, verdict "
        "solid; " + " ".join(
            f"<span class=\"swatch\" style=\"background:{_css_color(c)}\"></span>{esc(n)}"
            for n, c in zip(state_names, STATE_COLORS)) + ".</p>",
        f"<p class=\"meta\">Generated {esc(str(meta.get('generated', '')))} by "
        "tools/analyze_errors.py.</p>",
        "<nav>" + "".join(f"<a href=\"#kind-{k['kind']}\">{esc(k['kind'])} ({k['count']})</a>"
                          for k in analysis["kinds"]) + "</nav>",
        '<section id="summary"><h2>Summary</h2>',
        '<table class="summary"><tr><th>kind</th><th>definition (ground truth, verdict)</th>'
        "<th>failures</th><th>of</th><th>rate</th><th>parts with most</th></tr>",
    ]
    for k in analysis["kinds"]:
        top = ", ".join(f"{esc(t['part'])} {t['count']} ({t['share']:.0%})"
                        for t in k["top_parts"]) or "&ndash;"
        parts.append(
            f"<tr data-kind=\"{k['kind']}\"><td><a href=\"#kind-{k['kind']}\">{esc(k['kind'])}"
            f"</a></td><td>{esc(k['definition'])}</td><td class=\"n\">{k['count']}</td>"
            f"<td class=\"n\">{k['eligible']}</td><td class=\"n\">{_fmt(k['rate'], 3)}</td>"
            f"<td>{top}</td></tr>")
    parts.append("</table>")
    parts.append(f'<img class="heatmap" alt="failures per part and kind" '
                 f'src="{_data_uri(heatmap_png, "image/png")}"></section>')
    for k in analysis["kinds"]:
        cases = analysis["cases"][k["kind"]]
        drawn = [c for c in cases if (c["kind"], c["rank"]) in crops]
        parts.append(f"<section class=\"kind\" id=\"kind-{k['kind']}\" data-kind=\"{k['kind']}\">"
                     f"<h2>{esc(k['title'])} ({k['count']})</h2>"
                     f"<p class=\"meta\">{esc(k['definition'])}; most confident first, ranked "
                     f"by {esc(k['ranked_by'])} (in bold). Showing {len(drawn)} of "
                     f"{len(cases)}.</p>")
        if not cases:
            parts.append('<p class="none">No failure of this kind.</p></section>')
            continue
        parts.append('<div class="cases">')
        for case in drawn:
            uri = _data_uri(crops[(case["kind"], case["rank"])], "image/jpeg")
            parts.append(
                f"<figure class=\"case\" data-rank=\"{case['rank']}\">"
                f"<img alt=\"{esc(case['part'])} in {esc(case['file_name'])}\" src=\"{uri}\">"
                f"<figcaption>{_caption(case, state_names)}</figcaption></figure>")
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _css_color(rgb):
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def write_failure_page(analysis, output_dir, image_paths, meta, max_cases=12,
                       state_names=STATE_NAMES, show_progress=True):
    """Draw the worst cases of each kind and write the page, its JSON, heat map and crops.

    Args:
        analysis (dict): :func:`~bikestate.evaluation.failures.analyze_failures`'s output.
        output_dir (str): created if needed; files of an earlier run are replaced and its crops
            not drawn this time removed.
        image_paths (dict[int, str]): photo file per image id.
        meta (dict): shown at the top of the page and stored in the JSON (see
            :func:`render_html`); ``generated`` defaults to now.
        max_cases (int): cases drawn per kind, the most confident.
        show_progress (bool): a progress bar over the photos read.
    Returns:
        dict: paths of ``html``, ``json``, ``heatmap`` and ``crops`` (the folder).
    """
    meta = dict(meta)
    meta.setdefault("generated", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    chosen = [case for k in FAILURE_KINDS for case in analysis["cases"][k.name][:max_cases]]
    by_image = {}
    for case in chosen:
        by_image.setdefault(case["image_id"], []).append(case)
    crops = {}
    # Photo by photo, so each is decoded once however many of its parts failed.
    for image_id in tqdm(sorted(by_image), desc="drawing failures", unit="img",
                         disable=not show_progress or len(by_image) < 2):
        image = read_image(image_paths[image_id], format="RGB")
        for case in by_image[image_id]:
            crops[(case["kind"], case["rank"])] = _jpeg(draw_case(image, case, state_names))
    buf = io.BytesIO()
    plot_failure_heatmap(np.asarray(analysis["counts"]["matrix"]).reshape(
        len(analysis["counts"]["parts"]), len(analysis["counts"]["kinds"])),
        analysis["counts"]["parts"], analysis["counts"]["kinds"], buf)
    heatmap = buf.getvalue()

    crops_dir = os.path.join(output_dir, CROPS_DIR)
    os.makedirs(crops_dir, exist_ok=True)
    written = set()
    for (kind, rank), data in crops.items():
        name = f"{kind}_{rank:03d}.jpg"
        atomic_write_bytes(data, os.path.join(crops_dir, name))
        written.add(name)
    for kind in FAILURE_KINDS:  # crops of an earlier run that this one did not draw
        for path in glob.glob(os.path.join(crops_dir, f"{kind.name}_[0-9][0-9][0-9].jpg")):
            if os.path.basename(path) not in written:
                os.remove(path)
    paths = {"html": os.path.join(output_dir, PAGE_FILE),
             "json": os.path.join(output_dir, JSON_FILE),
             "heatmap": os.path.join(output_dir, HEATMAP_FILE), "crops": crops_dir}
    atomic_write_bytes(heatmap, paths["heatmap"])
    data = dict(meta, **analysis)
    data["cases"] = {kind: [dict(c, crop=(f"{CROPS_DIR}/{kind}_{c['rank']:03d}.jpg"
                                          if (kind, c["rank"]) in crops else None))
                            for c in cases] for kind, cases in analysis["cases"].items()}
    data["heatmap"] = HEATMAP_FILE
    atomic_write_json(data, paths["json"], indent=1)
    atomic_write_text(render_html(analysis, crops, heatmap, meta, state_names), paths["html"])
    return paths


def log_failures_to_wandb(output_dir, project, mode, entity=None, name=None):
    """Log a written failure page to W&B: a table with one row per drawn case (its crop as an
    image) and the heat map. A W&B failure is one warning, never an error.

    Args:
        output_dir (str): a folder written by :func:`write_failure_page`; the run is kept in
            its ``wandb/`` sub-folder.
        project, entity, name (str): the W&B run's project, entity and name.
        mode (str): ``online``, ``offline`` or ``disabled``.
    Returns:
        str or None: the run's folder on disk (offline) or URL, None when nothing was logged.
    """
    if mode == "disabled":
        return None
    try:
        import wandb

        with open(os.path.join(output_dir, JSON_FILE), encoding="utf-8") as f:
            data = json.load(f)
        columns = ["kind", "rank", "image", "part", "truth", "verdict", "ranked_by",
                   "rank_value", "score", "p_present", "confidence", "iou", "crop"]
        table = wandb.Table(columns=columns)
        for kind, cases in data["cases"].items():
            for c in cases:
                if c["crop"] is None:
                    continue
                table.add_data(kind, c["rank"], c["file_name"], c["part"], c["gt_state"],
                               c["verdict"], c["ranked_by"], c["rank_value"], c["score"],
                               c["p_present"], c["confidence"], c["iou"],
                               wandb.Image(os.path.join(output_dir, c["crop"])))
        summary = wandb.Table(columns=["kind", "failures", "of", "rate"],
                              data=[[k["kind"], k["count"], k["eligible"], k["rate"]]
                                    for k in data["kinds"]])
        run = wandb.init(project=project, entity=entity or None, name=name or None,
                         mode=mode, dir=output_dir, job_type="failure_analysis",
                         reinit="create_new")
        try:
            run.log({"failures": table, "failure_summary": summary,
                     "failure_heatmap": wandb.Image(os.path.join(output_dir, HEATMAP_FILE))})
            where = getattr(run, "url", None) or getattr(run, "dir", None)
        finally:
            run.finish(quiet=True)
        return where
    except Exception as e:  # W&B is optional: the page is written already
        logger.warning("W&B logging of the failure analysis failed: %s", e)
        return None
