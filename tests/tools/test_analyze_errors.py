"""tools/analyze_errors.py end to end: a hand-built dataset (real JPEGs, hand-made detections in
an evaluation folder) whose failures are known, the page opened in headless Chromium, and a
real model on SynthBikes giving the same failures from its run and from its saved results."""
import json
import os
import shutil
import sys

import cv2
import numpy as np
import pytest
from detectron2.data import MetadataCatalog

from coco_builders import coco_annotation, coco_with_states

from bikestate.constants import STATE_NAMES
from bikestate.data.catalog import register_bike_instances, unregister_bike_dataset
from bikestate.evaluation.evaluator import load_ground_truth, load_results
from bikestate.evaluation.failures import analyze_failures
from bikestate.evaluation.verification import verdict_pairs
from bikestate.utils.errors import DataError
from bikestate.verdict import OperatingPoint

from tool_helpers import CONFIG, REPO, run_tool, save_random_weights, synth_data_opts

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

INTACT, DAMAGED, ABSENT, OCCLUDED = range(4)
# Dataset category ids on purpose not 1..K: the results file speaks in them.
SADDLE, BELL, CHAIN = 5, 7, 9
CATEGORIES = {SADDLE: "saddle", BELL: "bell", CHAIN: "chain"}
BOX_S, BOX_B, BOX_C = [20, 20, 90, 60], [120, 30, 150, 60], [40, 90, 170, 140]
# (image, part, box XYXY, state) and (image, part, box, score, state probabilities).
# Default rule: not found below score 0.5, else the most probable state.
GROUND_TRUTH = [
    (1, SADDLE, BOX_S, INTACT), (1, BELL, BOX_B, ABSENT), (1, CHAIN, BOX_C, DAMAGED),
    (2, SADDLE, BOX_S, DAMAGED), (2, BELL, BOX_B, INTACT), (2, CHAIN, BOX_C, ABSENT),
    (3, SADDLE, BOX_S, INTACT), (3, BELL, BOX_B, ABSENT), (3, CHAIN, BOX_C, OCCLUDED),
]
DETECTIONS = [
    (1, SADDLE, BOX_S, 0.90, [0.10, 0.80, 0.05, 0.05]),  # intact called damaged: false alarm
    (1, BELL, BOX_B, 0.80, [0.70, 0.10, 0.10, 0.10]),    # absent called intact, P(present) .72
    (1, CHAIN, BOX_C, 0.95, [0.60, 0.30, 0.05, 0.05]),   # damage missed, confidence .57
    (2, SADDLE, BOX_S, 0.70, [0.50, 0.40, 0.05, 0.05]),  # damage missed, confidence .35
    (2, BELL, BOX_B, 0.30, [0.90, 0.04, 0.03, 0.03]),    # below 0.5: not found, best score .3
    (2, CHAIN, BOX_C, 0.60, [0.10, 0.10, 0.70, 0.10]),   # absent called absent: right
    (3, SADDLE, BOX_S, 0.90, [0.90, 0.04, 0.03, 0.03]),  # right
    (3, BELL, BOX_B, 0.55, [0.20, 0.60, 0.10, 0.10]),    # absent called damaged, P(present) .495
    # 3, CHAIN: occluded and no detection at all: not found, best score 0
]
EXPECTED = {  # kind -> [(image, part, ranking value)], most confident first
    "hallucination": [(1, "bell", 0.72), (3, "bell", 0.495)],
    "not_found": [(2, "bell", 0.30), (3, "chain", 0.0)],
    "missed_damage": [(1, "chain", 0.57), (2, "saddle", 0.35)],
    "false_alarm": [(1, "saddle", 0.72)],
}


def analyze(*args, env=None):
    return run_tool("analyze_errors.py", *args, env=env)


def _write_hand_built(root):
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for image_id in (1, 2, 3):
        photo = rng.integers(90, 170, (160, 200, 3), dtype=np.uint8)
        for _, part, box, _ in [g for g in GROUND_TRUTH if g[0] == image_id]:
            cv2.rectangle(photo, tuple(box[:2]), tuple(box[2:]), (40, 40, 40), 3)
        cv2.imwrite(str(images / f"img{image_id}.jpg"), photo)
    coco = coco_with_states(
        [{"id": i, "file_name": f"img{i}.jpg", "height": 160, "width": 200} for i in (1, 2, 3)],
        [coco_annotation(k, i, part, box, state, state_name=True)
         for k, (i, part, box, state) in enumerate(GROUND_TRUTH, start=1)],
        categories=[{"id": k, "name": n} for k, n in CATEGORIES.items()])
    (root / "gt.json").write_text(json.dumps(coco))
    # What BikeStateEvaluator writes: COCO results (dataset category ids) with state scores.
    evaluation = root / "evaluation"
    evaluation.mkdir()
    results = [{"image_id": i, "category_id": part, "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": score, "state": int(np.argmax(p)),
                "state_name": STATE_NAMES[int(np.argmax(p))], "state_scores": p}
               for i, part, (x0, y0, x1, y1), score, p in DETECTIONS]
    (evaluation / "coco_instances_results_with_states.json").write_text(json.dumps(results))
    return ["BIKESTATE.DATA.TRAIN_JSON", str(root / "gt.json"),
            "BIKESTATE.DATA.TRAIN_IMAGES", str(images),
            "BIKESTATE.DATA.VAL_JSON", str(root / "gt.json"),
            "BIKESTATE.DATA.VAL_IMAGES", str(images), "OUTPUT_DIR", str(root / "out")]


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand_built")
    data = _write_hand_built(root)
    result = analyze("--config-file", CONFIG, "--from-eval", str(root / "evaluation"),
                      "--output", str(root / "page"), "--wandb", *data,
                      env={"WANDB_MODE": "offline"})
    return {"root": root, "page": root / "page", "result": result, "data": data}


def test_hand_built_failures_in_the_right_kinds_and_order(hand_built):
    result = hand_built["result"]
    assert result.returncode == 0, result.stderr
    with open(hand_built["page"] / "failures.json") as f:
        data = json.load(f)
    found = {kind: [(c["image_id"], c["part"], c["rank_value"]) for c in cases]
             for kind, cases in data["cases"].items() if cases}
    assert found.keys() == EXPECTED.keys()
    for kind, cases in EXPECTED.items():
        assert [c[:2] for c in found[kind]] == [c[:2] for c in cases], kind
        assert [c[2] for c in found[kind]] == pytest.approx([c[2] for c in cases]), kind
    assert data["num_pairs"] == 9 and data["num_failures"] == 7
    assert data["rule"]["score_thresh"] == 0.5 and data["rule"]["source"] == "default"
    case = data["cases"]["missed_damage"][0]
    assert case["file_name"] == "img1.jpg" and case["gt_state"] == "damaged"
    assert case["verdict"] == "intact" and case["rank"] == 1
    assert case["p_state"]["damaged"] == pytest.approx(0.95 * 0.3)
    assert case["gt_boxes"] == [BOX_C] and case["box"] == BOX_C and case["iou"] == 1.0
    with open(hand_built["page"] / case["crop"], "rb") as f:
        assert f.read(2) == b"\xff\xd8"  # a JPEG
    summary = {k["kind"]: k for k in data["kinds"]}
    assert summary["hallucination"]["eligible"] == 3  # three absent parts could be claimed
    assert summary["hallucination"]["top_parts"] == [{"part": "bell", "count": 2, "share": 1.0}]
    matrix = np.array(data["counts"]["matrix"])  # parts x kinds, parts in contiguous order
    assert data["counts"]["parts"] == ["saddle", "bell", "chain"]
    assert matrix[1, data["counts"]["kinds"].index("hallucination")] == 2
    with open(hand_built["page"] / "failure_heatmap.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "hallucination" in result.stdout and "failures.html" in result.stdout


def test_cases_logged_to_wandb_offline(hand_built):
    tables = list((hand_built["page"] / "wandb").glob("offline-run-*/files/media/table/"
                                                      "failures_*.table.json"))
    assert len(tables) == 1
    with open(tables[0]) as f:
        table = json.load(f)
    assert len(table["data"]) == 7  # every case drawn, each with its crop
    assert table["columns"][-1] == "crop"


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="no chromium on this machine (make setup installs it, as root)")
def test_page_in_headless_chromium(hand_built, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = hand_built["page"] / "failures.html"
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # Self-contained: nothing but the file itself may be requested.
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                    else outside.append(r.url))
            page.goto(page_file.as_uri())
            assert page.locator("h1").inner_text() == "Failure analysis: bike_val"
            assert page.locator("table.summary tr[data-kind]").count() == 8
            assert page.locator("section.kind").count() == 8
            ranks = page.locator("#kind-missed_damage figure.case").evaluate_all(
                "els => els.map(e => [e.dataset.rank, e.querySelector('.name').textContent])")
            assert ranks == [["1", "img1.jpg"], ["2", "img2.jpg"]]
            assert page.locator("#kind-hallucination figure.case").count() == 2
            assert "No failure of this kind" in page.locator("#kind-other_state").inner_text()
            # Every picture decoded (the crops and the heat map).
            sizes = page.locator("img").evaluate_all("els => els.map(e => e.naturalWidth)")
            assert len(sizes) == 8 and min(sizes) > 0
            page.screenshot(path=str(tmp_path / "failures.png"), full_page=True)
        finally:
            browser.close()
    assert outside == []
    with open(tmp_path / "failures.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _main_in_process(args, monkeypatch):
    """The tool's main() here: for input it refuses before registering any dataset."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import analyze_errors
    finally:
        sys.path.remove(os.path.join(REPO, "tools"))
    monkeypatch.setenv("BIKESTATE_DEBUG", "0")
    with pytest.raises(SystemExit) as exit_info:
        analyze_errors.main(args)
    return exit_info.value.code


@pytest.mark.parametrize("flags, message", [
    (["--from-eval", "nowhere"], "nowhere: no such evaluation folder"),
    (["--from-eval", "{empty}"], "coco_instances_results_with_states.json: no such file"),
    (["--iou", "0"], "--iou must be in (0, 1]"),
    (["--max-cases", "0"], "--max-cases must be at least 1"),
    ([], "MODEL.WEIGHTS is empty"),
])
def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch, flags, message):
    flags = [f.format(empty=tmp_path) for f in flags]
    code = _main_in_process(["--config-file", CONFIG, "--output", str(tmp_path / "page"),
                             *flags], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "page").exists()  # nothing written


@pytest.mark.parametrize("bad", ["results", "weights"])
def test_bad_file_is_one_line_naming_it(hand_built, tmp_path, bad):
    # Found only after the data is registered: still one line, exit 2, no page.
    if bad == "results":
        path = tmp_path / "evaluation" / "coco_instances_results_with_states.json"
        path.parent.mkdir()
        path.write_text('[{"image_id": 1, "category_id": ')  # cut short
        flags, opts = ["--from-eval", str(path.parent)], []
    else:
        path = tmp_path / "model_best.pth"
        path.write_bytes(b"not a checkpoint")
        flags, opts = [], ["MODEL.WEIGHTS", str(path)]
    result = analyze("--config-file", CONFIG, "--output", str(tmp_path / "page"), *flags,
                     *hand_built["data"], *opts)
    assert result.returncode == 2, result.stderr
    # The error is the last line and the only error; detectron2 may log a note on the
    # hand-built file's category ids before it.
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if ": error:" in line] == lines[-1:], result.stderr
    assert lines[-1].startswith("analyze_errors.py: error: ") and str(path) in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "page").exists()


@pytest.fixture
def hand_built_dataset(hand_built):
    """The hand-built ground truth registered here, under a name of its own."""
    name = f"failures_test_{os.getpid()}"
    register_bike_instances(name, str(hand_built["root"] / "gt.json"),
                            str(hand_built["root"] / "images"))
    yield name
    unregister_bike_dataset(name)


@pytest.mark.parametrize("detection, message", [
    ({"category_id": 1}, "detection 0 has category_id 1, which dataset '{name}' does not have"),
    ({"image_id": 4}, "detection 0 is of image_id 4, which dataset '{name}' does not have"),
    ({"state_scores": [1, 0]}, "detection 0 has 2 state_scores, expected 4"),
    ({"score": None}, "detection 0 is not a detection with bbox, score and state_scores"),
])
def test_results_file_errors_name_the_file(hand_built_dataset, tmp_path, detection, message):
    good = {"image_id": 1, "category_id": SADDLE, "bbox": [0, 0, 5, 5], "score": 0.9,
            "state_scores": [1, 0, 0, 0]}
    path = tmp_path / "coco_instances_results_with_states.json"
    path.write_text(json.dumps([dict(good, **detection)]))
    with pytest.raises(DataError) as error:
        load_results(str(tmp_path), hand_built_dataset)
    assert str(error.value).startswith(f"{path}: {message.format(name=hand_built_dataset)}")


def test_results_read_back_per_image(hand_built_dataset, hand_built):
    predictions = load_results(str(hand_built["root"] / "evaluation"), hand_built_dataset)
    assert sorted(predictions) == [1, 2, 3]
    assert predictions[3]["classes"].tolist() == [0, 1]  # saddle, bell: contiguous ids
    assert predictions[1]["boxes"].tolist() == [BOX_S, BOX_B, BOX_C]  # XYXY again
    assert predictions[2]["state_scores"][1].tolist() == pytest.approx([0.9, 0.04, 0.03, 0.03])


# Tiny test size; near-zero thresholds so that an untrained model has verdicts of every kind.
SMALL_OPTS = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192",
              "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.001",
              "TEST.BIKESTATE.VERIFY_SCORE_THRESH", "0.02"]


def test_model_run_and_its_saved_results_agree(synth_small, tmp_path):
    weights = save_random_weights(tmp_path / "model.pth")
    data = synth_data_opts(synth_small, tmp_path)
    ran = analyze("--config-file", CONFIG, "--output", str(tmp_path / "run"), "--max-cases",
                   "3", *SMALL_OPTS, *data, "MODEL.WEIGHTS", weights)
    assert ran.returncode == 0, ran.stderr
    with open(tmp_path / "run" / "failures.json") as f:
        page = json.load(f)
    assert page["num_pairs"] == 12 * 22  # every part of every SynthBikes image
    assert page["num_failures"] == np.sum(page["counts"]["matrix"]) > 0
    assert sum(1 for cases in page["cases"].values() if cases) >= 3
    assert all((c["crop"] is not None) == (c["rank"] <= 3)
               for cases in page["cases"].values() for c in cases)
    assert page["weights"] == weights

    # The evaluation folder it wrote, read back (as --from-eval does), gives the same failures;
    # the results file rounds scores to 6 decimals, so near-ties may swap places.
    name = f"failures_test_{os.getpid()}"
    register_bike_instances(name, str(tmp_path / "val_coco.json"), synth_small["images"])
    try:
        predictions = load_results(str(tmp_path / "run" / "evaluation"), name)
        pairs = verdict_pairs(predictions, load_ground_truth(name), 22, OperatingPoint(0.02))
        again = analyze_failures(pairs, MetadataCatalog.get(name).thing_classes)
    finally:
        unregister_bike_dataset(name)
    for kind, cases in page["cases"].items():
        other = again["cases"][kind]
        assert sorted((c["image_id"], c["part"]) for c in cases) == sorted(
            (c["image_id"], c["part"]) for c in other), kind
        assert [c["rank_value"] for c in cases] == pytest.approx(
            [c["rank_value"] for c in other], abs=1e-5)
