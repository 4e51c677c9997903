"""tools/calibrate.py end to end: a real model on a real (SynthBikes) validation set, the
thresholds.json it writes beside the weights, and tools/predict.py using it."""
import json

import pytest

from bikestate.verdict import OperatingPoint

from tool_helpers import CONFIG, run_tool, save_random_weights, synth_data_opts

# Tiny test size; a near-zero detection threshold so that an untrained model has detections.
SMALL_OPTS = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192",
              "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.001"]


@pytest.fixture(scope="module")
def calibrated(synth_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    weights = save_random_weights(root / "model_best.pth")
    data = synth_data_opts(synth_small, root / "out")
    result = run_tool("calibrate.py", "--config-file", CONFIG, "--present-recall", "0.9",
                      *SMALL_OPTS, *data, "MODEL.WEIGHTS", weights)
    return {"root": root, "weights": weights, "result": result, "data": data}


def test_writes_thresholds_beside_the_weights(calibrated):
    result, root = calibrated["result"], calibrated["root"]
    assert result.returncode == 0, result.stderr
    point = OperatingPoint.load(str(root / "thresholds.json"))
    assert point.presence_thresh is not None and 0.0 <= point.presence_thresh <= 1.0
    assert point.chosen_on["dataset"] == "bike_val"
    assert point.chosen_on["present_recall_target"] == 0.9
    assert point.chosen_on["num_pairs"] == 12 * 22  # every part of every SynthBikes image
    with open(root / "calibration_curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "Operating point chosen on bike_val (264 image-part pairs)" in result.stdout


def test_predict_uses_and_states_the_calibrated_rule(calibrated, synth_small):
    out = calibrated["root"] / "inspection"
    result = run_tool("predict.py", "--config-file", CONFIG, "--input", synth_small["images"],
                      "--output", str(out), *SMALL_OPTS[:6], "MODEL.WEIGHTS",
                      calibrated["weights"])
    assert result.returncode == 0, result.stderr
    with open(out / "report.json") as f:
        report = json.load(f)
    rule = report["verdict_rule"]
    point = OperatingPoint.load(str(calibrated["root"] / "thresholds.json"))
    assert rule["source"] == str(calibrated["root"] / "thresholds.json")
    assert rule["presence_thresh"] == point.presence_thresh
    assert rule["presence"] == point.presence
    assert set(point.chosen_on["presence_candidates"]) == {"score_x_state", "state", "vote"}
    assert report["score_threshold"] == point.score_thresh


@pytest.mark.parametrize("flags, opts, message", [
    ([], ["MODEL.WEIGHTS", ""], "MODEL.WEIGHTS is empty"),
    (["--dataset", "bike_nope"], [], "dataset 'bike_nope' is not registered"),
    (["--present-recall", "1.5"], [], "--present-recall must be in (0, 1]"),
])
def test_bad_input_is_one_line(calibrated, flags, opts, message):
    result = run_tool("calibrate.py", "--config-file", CONFIG, *flags, *SMALL_OPTS,
                      *calibrated["data"], "MODEL.WEIGHTS", calibrated["weights"], *opts)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
