"""tools/predict.py end to end, as a user runs it, on the photos users really have."""
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from coco_builders import coco_annotation, coco_with_states

from bikestate import add_bikestate_config
from bikestate.constants import NOT_FOUND, PART_NAMES, STATE_NAMES
from bikestate.inference import predictions_to_coco_results

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(REPO, "tools", "predict.py")
CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
# Tiny test size so the CPU run stays short; 0.01 is a threshold an untrained model clears.
SMALL_OPTS = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192"]
THRESHOLD = "0.01"
VERDICTS = set(STATE_NAMES) | {NOT_FOUND}

# name -> upright (height, width) of the readable photos written by the fixture.
READABLE = {
    "photo.jpg": (240, 320),
    "photo.png": (240, 320),
    "gray.png": (240, 320),
    "cutout.png": (240, 320),
    "phone.jpg": (320, 200),  # stored 200 high x 320 wide, EXIF says: rotate to portrait
    "large.jpg": (750, 1000),  # 5x the test size: boxes must come back in these pixels
}


def _photo(h, w, seed):
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 180, dtype=np.uint8)
    image[h // 3: 2 * h // 3] = (rng.random((2 * h // 3 - h // 3, w, 3)) * 255).astype(np.uint8)
    return image


def run_predict(*args):
    env = dict(os.environ, BIKESTATE_DEBUG="0")
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(_photo(240, 320, 0)).save(root / "photo.jpg", quality=90)
    Image.fromarray(_photo(240, 320, 1)).save(root / "photo.png")
    Image.fromarray(_photo(240, 320, 2)[:, :, 0]).save(root / "gray.png")
    rgba = np.dstack([_photo(240, 320, 3), np.full((240, 320), 200, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(root / "cutout.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(200, 320, 4)).save(root / "phone.jpg", exif=exif)
    Image.fromarray(_photo(750, 1000, 5)).save(root / "large.jpg", quality=85)
    (root / "notes.txt").write_text("not a photo")
    data = (root / "photo.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A checkpoint of a freshly built small model (what a user passes as MODEL.WEIGHTS)."""
    cfg = get_cfg()
    add_bikestate_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("weights") / "model_final.pth")
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def run(photos, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "inspection"
    result = run_predict("--config-file", CONFIG, "--input", str(photos), "--output", str(out),
                         "--confidence-threshold", THRESHOLD, "--batch-size", "2",
                         *SMALL_OPTS, "MODEL.WEIGHTS", weights)
    predictions = None
    if (out / "predictions.json").exists():
        with open(out / "predictions.json") as f:
            predictions = json.load(f)
    return {"result": result, "out": out, "photos": photos, "predictions": predictions}


def test_exit_code_and_files_written(run):
    result, out = run["result"], run["out"]
    # 1: one image (truncated.jpg) got no answer; every other one is written.
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(out)) == ["predictions.json", "report.csv", "report.json", "vis"]
    # photo.jpg and photo.png share a stem: the second picture gets the extension in its name.
    assert sorted(os.listdir(out / "vis")) == ["cutout.jpg", "gray.jpg", "large.jpg",
                                               "phone.jpg", "photo.jpg", "photo_png.jpg"]
    assert "Inspected 6 image(s)" in result.stdout and "1 unreadable" in result.stdout
    for name in ("predictions.json", "report.json"):
        with open(out / name) as f:
            document = json.load(f)
        assert document["status"] == "finished" and document["images_found"] == 7


def test_non_image_skipped_and_truncated_reported(run):
    stderr = run["result"].stderr
    assert "notes.txt: skipped, not an image" in stderr
    assert "truncated.jpg: cannot read image" in stderr
    truncated = str(run["photos"] / "truncated.jpg")
    assert [(e["file_name"], e["stage"]) for e in run["predictions"]["errors"]] == [
        (truncated, "read")]
    with open(run["out"] / "report.json") as f:
        report = json.load(f)
    assert [e["file_name"] for e in report["errors"]] == [truncated]
    names = {os.path.basename(d["file_name"]) for d in run["predictions"]["detections"]}
    assert "notes.txt" not in names and "truncated.jpg" not in names


def test_report_has_every_part_of_every_readable_image(run):
    with open(run["out"] / "report.json") as f:
        report = json.load(f)
    assert report["num_images"] == len(READABLE)
    for image in report["images"]:
        assert [p["part"] for p in image["parts"]] == list(PART_NAMES)
        assert {p["verdict"] for p in image["parts"]} <= VERDICTS
        confidences = [a["confidence"] for a in image["attention"]]
        assert confidences == sorted(confidences, reverse=True)
    with open(run["out"] / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 22 * len(READABLE)
    per_image = {}
    for row in rows:
        per_image.setdefault(os.path.basename(row["file_name"]), []).append(row["part"])
    assert per_image == {name: list(PART_NAMES) for name in READABLE}


def test_detections_are_in_upright_original_pixels(run):
    predictions = run["predictions"]
    sizes = {os.path.basename(i["file_name"]): (i["height"], i["width"])
             for i in predictions["images"]}
    assert sizes == READABLE
    by_image = {}
    for det in predictions["detections"]:
        by_image.setdefault(os.path.basename(det["file_name"]), []).append(det)
        assert set(det["state_scores"]) == set(STATE_NAMES)
        assert sum(det["state_scores"].values()) == pytest.approx(1.0, abs=1e-3)
        # The state is the most likely one (the file rounds probabilities to 5 decimals, so a
        # near-tie of the random-init model may round to equal values).
        assert det["state_scores"][det["state"]] >= max(det["state_scores"].values()) - 1e-5
        assert det["score"] >= float(THRESHOLD)
        assert det["part"] == PART_NAMES[det["category_id"] - 1]
    assert set(by_image) == set(READABLE)
    for name, dets in by_image.items():
        h, w = READABLE[name]
        boxes = np.array([d["bbox"] for d in dets])
        assert (boxes[:, :2] >= -0.01).all()
        assert (boxes[:, 0] + boxes[:, 2] <= w + 0.01).all(), name
        assert (boxes[:, 1] + boxes[:, 3] <= h + 0.01).all(), name
    # The phone photo is portrait once upright: boxes use rows beyond the stored height (200),
    # which they could not if the EXIF rotation were ignored.
    phone = np.array([d["bbox"] for d in by_image["phone.jpg"]])
    assert (phone[:, 1] + phone[:, 3]).max() > 200
    # The large photo was seen at 192 px wide: its boxes are mapped back to 1000 px.
    large = np.array([d["bbox"] for d in by_image["large.jpg"]])
    assert (large[:, 0] + large[:, 2]).max() > 192


def test_pictures_show_the_upright_photo_with_a_legend(run):
    phone = np.asarray(Image.open(run["out"] / "vis" / "phone.jpg"))
    assert phone.shape[1] == 200 and phone.shape[0] > 320  # portrait, plus the legend strip
    large = np.asarray(Image.open(run["out"] / "vis" / "large.jpg"))
    assert large.shape[1] == 1000 and large.shape[0] > 750


def _gt_for(run):
    """A COCO-with-states ground truth for the readable photos (two parts each)."""
    images, annotations = [], []
    for i, (name, (h, w)) in enumerate(sorted(READABLE.items()), start=1):
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        for j, (part, state) in enumerate([("saddle", 0), ("bell", 2)]):
            x0 = 10 + 30 * j
            annotations.append(coco_annotation(len(annotations) + 1, i,
                                               PART_NAMES.index(part) + 1, [x0, 10, x0 + 40, 40],
                                               state))
    return coco_with_states(images, annotations)


def test_predictions_round_trip_into_the_evaluators_format(run, tmp_path):
    gt = _gt_for(run)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    results = predictions_to_coco_results(str(run["out"] / "predictions.json"), str(gt_path))
    assert len(results) == len(run["predictions"]["detections"])

    # pycocotools reads them as detections of those images and evaluates them.
    coco_gt = COCO(str(gt_path))
    coco_dt = coco_gt.loadRes(results)
    ids = {im["file_name"]: im["id"] for im in gt["images"]}
    for det, res in zip(run["predictions"]["detections"], results):
        assert res["image_id"] == ids[os.path.basename(det["file_name"])]
        assert res["bbox"] == det["bbox"]
    evaluation = COCOeval(coco_gt, coco_dt, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats.shape == (12,)

    # BikeStateEvaluator, fed the same detections as model outputs, writes the same results.
    from bikestate.data.catalog import register_bike_instances
    from bikestate.evaluation import BikeStateEvaluator

    register_bike_instances("predict_roundtrip", str(gt_path), str(run["photos"]), replace=True)
    evaluator = BikeStateEvaluator("predict_roundtrip", distributed=False,
                                   output_dir=str(tmp_path / "eval"))
    evaluator.reset()
    for image_id in sorted(ids.values()):
        mine = [r for r in results if r["image_id"] == image_id]
        inst = Instances((1, 1))
        xywh = torch.tensor([r["bbox"] for r in mine], dtype=torch.float64).reshape(-1, 4)
        inst.pred_boxes = Boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).float())
        inst.scores = torch.tensor([r["score"] for r in mine], dtype=torch.float32)
        inst.pred_classes = torch.tensor([r["category_id"] - 1 for r in mine])
        inst.pred_states = torch.tensor([r["state"] for r in mine])
        inst.state_scores = torch.tensor([r["state_scores"] for r in mine], dtype=torch.float32)
        evaluator.process([{"image_id": image_id}], [{"instances": inst}])
    metrics = evaluator.evaluate()
    assert "bbox" in metrics and "state" in metrics
    with open(tmp_path / "eval" / "coco_instances_results_with_states.json") as f:
        written = json.load(f)
    key = lambda r: (r["image_id"], r["category_id"], round(r["score"], 4),  # noqa: E731
                     tuple(round(v, 1) for v in r["bbox"]))
    assert sorted(map(key, written)) == sorted(map(key, results))
    assert sorted((key(r), r["state"]) for r in written) == sorted(
        (key(r), r["state"]) for r in results)


def _load_tool():
    spec = importlib.util.spec_from_file_location("predict_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(capsys, *args):
    """The tool's main() in this process (the error cases, without paying for a new Python).

    Returns (exit status, stderr lines).
    """
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main(list(args))
    return exit_info.value.code, capsys.readouterr().err.splitlines()


def test_empty_input_is_an_error_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no photos here")
    out = tmp_path / "out"
    code, stderr = run_in_process(capsys, "--config-file", CONFIG, "--input", str(empty),
                                  "--output", str(out), *SMALL_OPTS)
    assert code == 2
    errors = [line for line in stderr if "error:" in line]
    assert len(errors) == 1 and "no images found" in errors[0]
    assert not out.exists()


def test_unwritable_output_is_one_line_exit_2(photos, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a file where a folder should be: not writable even for root
    code, stderr = run_in_process(capsys, "--config-file", CONFIG, "--input",
                                  str(photos / "photo.jpg"), "--output", str(blocker / "out"),
                                  *SMALL_OPTS)
    assert code == 2
    assert [line for line in stderr if "error:" in line] == [
        line for line in stderr if "cannot create output folder" in line]
    assert len(stderr) == 1


def test_bad_config_option_is_one_line_exit_2(photos, tmp_path, capsys):
    code, stderr = run_in_process(capsys, "--config-file", CONFIG, "--input",
                                  str(photos / "photo.jpg"), "--output", str(tmp_path / "out"),
                                  "MODEL.NO_SUCH_KEY", "1")
    assert code == 2
    assert len(stderr) == 1 and "NO_SUCH_KEY" in stderr[0]
    assert not (tmp_path / "out").exists()


def test_missing_weights_is_one_line_exit_2(photos, tmp_path, capsys):
    code, stderr = run_in_process(capsys, "--config-file", CONFIG, "--input",
                                  str(photos / "photo.jpg"), "--output", str(tmp_path / "out"),
                                  *SMALL_OPTS, "MODEL.WEIGHTS", str(tmp_path / "nope.pth"))
    assert code == 2
    errors = [line for line in stderr if "error:" in line]
    assert len(errors) == 1 and "nope.pth" in errors[0] and "not found" in errors[0]
    assert not (tmp_path / "out").exists()


def test_overrides_after_the_inputs_are_taken_as_overrides(photos, tmp_path, capsys):
    # --input is last here, so argparse hands it the KEY VALUE pairs; they must still count.
    code, stderr = run_in_process(capsys, "--config-file", CONFIG, "--output",
                                  str(tmp_path / "out"), "--input", str(photos / "photo.jpg"),
                                  "MODEL.NO_SUCH_KEY", "1")
    assert code == 2
    assert len(stderr) == 1 and "NO_SUCH_KEY" in stderr[0]


# --------------------------------------------------------- one photo costs only itself (#21)

# name -> upright (height, width): odd but valid photos among normal ones.
ODD = {
    "normal.jpg": (240, 320),
    "narrow.jpg": (500, 3),
    "flat.png": (3, 500),
    "dot.jpg": (1, 1),
    "animated.gif": (40, 60),
    "normal_too.png": (180, 240),
}


@pytest.fixture(scope="module")
def odd_run(weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("odd_photos")
    for i, (name, (h, w)) in enumerate(ODD.items()):
        if name.endswith(".gif"):
            frames = [Image.fromarray(_photo(h, w, 10 + k)) for k in range(3)]
            frames[0].save(root / name, save_all=True, append_images=frames[1:])
        else:
            Image.fromarray(_photo(h, w, i)).save(root / name)
    out = tmp_path_factory.mktemp("odd_run") / "inspection"
    result = run_predict("--config-file", CONFIG, "--input", str(root), "--output", str(out),
                         "--confidence-threshold", THRESHOLD, "--batch-size", "2",
                         *SMALL_OPTS, "MODEL.WEIGHTS", weights)
    return {"result": result, "out": out, "root": root}


def test_narrow_tiny_and_animated_photos_all_get_a_report_and_a_picture(odd_run):
    # A 3x500 and a 1x1 photo used to end the run (ValueError in the legend) after 2 of 6.
    result, out = odd_run["result"], odd_run["out"]
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr
    with open(out / "report.json") as f:
        report = json.load(f)
    assert report["errors"] == [] and report["status"] == "finished"
    assert {os.path.basename(r["file_name"]): (r["height"], r["width"])
            for r in report["images"]} == ODD
    for image in report["images"]:
        assert [p["part"] for p in image["parts"]] == list(PART_NAMES)
    gif = next(r for r in report["images"] if r["file_name"].endswith(".gif"))
    assert gif["notes"] == ["animated: the first of 3 frames is inspected"]
    assert "animated.gif: animated: the first of 3 frames is inspected" in result.stderr
    with open(out / "predictions.json") as f:
        predictions = json.load(f)
    for det in predictions["detections"]:
        h, w = ODD[os.path.basename(det["file_name"])]
        x, y, bw, bh = det["bbox"]
        assert -0.01 <= x <= x + bw <= w + 0.01 and -0.01 <= y <= y + bh <= h + 0.01
    assert sorted(os.listdir(out / "vis")) == sorted(
        os.path.splitext(name)[0] + ".jpg" for name in ODD)
    for name in os.listdir(out / "vis"):
        Image.open(out / "vis" / name).load()


def test_an_image_failing_unexpectedly_costs_only_itself(photos, weights, tmp_path, capsys,
                                                          monkeypatch):
    """A failure of the model on one photo, and of the drawing on another, in batches of 2.

    No photo makes the model or the drawing fail any more, so these two failures are injected
    into them (for the photos 61 and 77 pixels wide); the rest of the run is real.
    """
    from bikestate.inference import BikeStatePredictor, inspection

    folder = tmp_path / "photos"
    folder.mkdir()
    # In name order, batches of 2: [a, b_model_fails], [c, d_draw_fails], [e].
    for name, (h, w) in {"a.jpg": (120, 160), "b_model_fails.jpg": (50, 61),
                         "c.jpg": (90, 120), "d_draw_fails.jpg": (60, 77),
                         "e.jpg": (100, 100)}.items():
        Image.fromarray(_photo(h, w, len(name))).save(folder / name)

    to_model_input = BikeStatePredictor._to_model_input

    def model_input_failing_at_61(self, image):
        if image.shape[1] == 61:
            raise RuntimeError("injected model failure")
        return to_model_input(self, image)

    draw = inspection.draw_verdicts

    def draw_failing_at_77(image_rgb, *args, **kwargs):
        if image_rgb.shape[1] == 77:
            raise ValueError("injected drawing failure")
        return draw(image_rgb, *args, **kwargs)

    monkeypatch.setattr(BikeStatePredictor, "_to_model_input", model_input_failing_at_61)
    monkeypatch.setattr(inspection, "draw_verdicts", draw_failing_at_77)
    out = tmp_path / "out"
    code, stderr = run_in_process(capsys, "--config-file", CONFIG, "--input", str(folder),
                                  "--output", str(out), "--confidence-threshold", THRESHOLD,
                                  "--batch-size", "2", *SMALL_OPTS, "MODEL.WEIGHTS", weights)
    assert code == 1
    errors = [line for line in stderr if "error:" in line]
    assert errors == [
        f"predict.py: error: {folder / 'b_model_fails.jpg'}: the model failed "
        f"(RuntimeError: injected model failure) (skipped)",
        f"predict.py: error: {folder / 'd_draw_fails.jpg'}: drawing the picture failed "
        f"(ValueError: injected drawing failure); its report is kept",
    ]
    with open(out / "report.json") as f:
        report = json.load(f)
    assert [(os.path.basename(e["file_name"]), e["stage"]) for e in report["errors"]] == [
        ("b_model_fails.jpg", "predict"), ("d_draw_fails.jpg", "draw")]
    # a.jpg shared its batch with b_model_fails.jpg: it was predicted again on its own.
    assert [os.path.basename(r["file_name"]) for r in report["images"]] == [
        "a.jpg", "c.jpg", "d_draw_fails.jpg", "e.jpg"]
    assert sorted(os.listdir(out / "vis")) == ["a.jpg", "c.jpg", "e.jpg"]
    assert "Traceback" not in "\n".join(stderr)


def _signal_runs(weights, tmp_path_factory):
    """predict.py on 150 photos, stopped by SIGTERM, SIGINT and SIGKILL once 2 are drawn.

    The SIGKILL run checkpoints after every image (CHECKPOINT_SECONDS 0), which cannot be
    caught: what it leaves is the last checkpoint.
    """
    root = tmp_path_factory.mktemp("many_photos")
    for i in range(150):
        Image.fromarray(_photo(60, 80, i)).save(root / f"photo_{i:03d}.png")
    args = ["--config-file", CONFIG, "--input", str(root), "--confidence-threshold", THRESHOLD]
    opts = [*SMALL_OPTS, "MODEL.WEIGHTS", weights]
    checkpoint_every_image = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('predict_tool', {TOOL!r}); "
        "tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool); "
        "tool.CHECKPOINT_SECONDS = 0; tool.main(sys.argv[1:])")
    env = dict(os.environ, BIKESTATE_DEBUG="0")
    runs = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        out = tmp_path_factory.mktemp(signal.Signals(signum).name) / "inspection"
        command = [sys.executable, TOOL] if signum != signal.SIGKILL else [
            sys.executable, "-c", checkpoint_every_image]
        proc = subprocess.Popen([*command, *args, "--output", str(out), *opts], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        runs[signum] = (proc, out)
    deadline = time.monotonic() + 300
    signalled = set()
    while len(signalled) < len(runs) and time.monotonic() < deadline:
        for signum, (proc, out) in runs.items():
            vis = out / "vis"
            if signum not in signalled and (proc.poll() is not None or vis.is_dir() and len(
                    [n for n in os.listdir(vis) if n.endswith(".jpg")]) >= 2):
                if proc.poll() is None:  # (one that ended too early fails on its status)
                    proc.send_signal(signum)
                signalled.add(signum)
        time.sleep(0.05)
    results = {}
    for signum, (proc, out) in runs.items():
        if signum not in signalled:
            proc.kill()
        stdout, stderr = proc.communicate(timeout=120)
        results[signum] = {"code": proc.returncode, "stdout": stdout, "stderr": stderr,
                           "out": out, "total": 150}
    return results


@pytest.fixture(scope="module")
def signal_runs(weights, tmp_path_factory):
    return _signal_runs(weights, tmp_path_factory)


def _complete_files(out, killed=False):
    """predictions.json, report.json and report.csv, each parsed (fails if half-written).

    Only a SIGKILL may leave the hidden temporary file of a write it cut short.
    """
    with open(out / "predictions.json") as f:
        predictions = json.load(f)
    with open(out / "report.json") as f:
        report = json.load(f)
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert killed or not [n for n in os.listdir(out) if n.endswith(".tmp")]
    return predictions, report, rows


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_writes_complete_files_for_exactly_the_images_done(signal_runs, signum,
                                                                          code):
    run = signal_runs[signum]
    assert run["code"] == code, run["stderr"]
    assert f"interrupted by {signal.Signals(signum).name} after" in run["stderr"]
    assert "Traceback" not in run["stderr"]
    predictions, report, rows = _complete_files(run["out"])
    assert predictions["status"] == report["status"] == "interrupted"
    drawn = sorted(os.listdir(run["out"] / "vis"))
    done = [os.path.basename(i["file_name"]) for i in predictions["images"]]
    assert 2 <= len(done) < run["total"]
    assert [os.path.splitext(n)[0] + ".jpg" for n in done] == drawn
    assert [os.path.basename(r["file_name"]) for r in report["images"]] == done
    assert [os.path.basename(r["file_name"]) for r in rows[::22]] == done
    assert len(rows) == 22 * len(done)
    assert {os.path.basename(d["file_name"]) for d in predictions["detections"]} <= set(done)
    assert f"Inspected {len(done)} image(s)" in run["stdout"]


def test_killed_run_leaves_its_last_checkpoint(signal_runs):
    run = signal_runs[signal.SIGKILL]
    assert run["code"] == -signal.SIGKILL
    predictions, report, rows = _complete_files(run["out"], killed=True)
    assert predictions["status"] == report["status"] == "running"
    drawn = sorted(os.listdir(run["out"] / "vis"))
    done = [os.path.splitext(os.path.basename(i["file_name"]))[0] + ".jpg"
            for i in predictions["images"]]
    # Written after every image: at most the image being kept when killed is missing.
    assert done == drawn[:len(done)] and len(drawn) - 1 <= len(done)
    # The three files are renamed into place one after the other (predictions.json,
    # report.json, report.csv); no file can stop a SIGKILL between two renames, so each may hold
    # one image fewer than the one renamed before it, never more, and never another order.
    images = [i["file_name"] for i in predictions["images"]]
    in_json = [r["file_name"] for r in report["images"]]
    in_csv = [r["file_name"] for r in rows[::22]]
    assert len(rows) % 22 == 0
    assert in_json == images[:len(in_json)] and len(images) - 1 <= len(in_json)
    assert in_csv == in_json[:len(in_csv)] and len(in_json) - 1 <= len(in_csv)
    assert len(in_csv) >= len(images) - 1
