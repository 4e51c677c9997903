"""tools/predict.py end to end, as a user runs it, on the photos users really have."""
import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

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
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["predictions.json", "report.csv", "report.json", "vis"]
    # photo.jpg and photo.png share a stem: the second picture gets the extension in its name.
    assert sorted(os.listdir(out / "vis")) == ["cutout.jpg", "gray.jpg", "large.jpg",
                                               "phone.jpg", "photo.jpg", "photo_png.jpg"]
    assert "Inspected 6 image(s)" in result.stdout


def test_non_image_skipped_and_truncated_reported(run):
    stderr = run["result"].stderr
    assert "notes.txt: skipped, not an image" in stderr
    assert "truncated.jpg: cannot read image" in stderr
    truncated = str(run["photos"] / "truncated.jpg")
    assert [e["file_name"] for e in run["predictions"]["errors"]] == [truncated]
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
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": PART_NAMES.index(part) + 1,
                                "bbox": [10 + 30 * j, 10, 40, 30], "area": 1200, "iscrowd": 0,
                                "state": state})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(PART_NAMES)],
            "state_categories": [{"id": k, "name": n} for k, n in enumerate(STATE_NAMES)]}


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
    from bikestate.data.datasets import register_bike_instances
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
