"""The inspection report: one verdict per part, the attention list, report.json/.csv."""
import csv
import json
import os

import pytest

from bikestate.constants import NOT_FOUND, PART_NAMES
from bikestate.inference import build_report, write_reports
from bikestate.inference.report import CSV_COLUMNS
from bikestate.verdict import OperatingPoint, load_operating_point

DETECTIONS = [
    # The saddle twice: the higher-scoring box speaks, even though the other one is more sure
    # of its state (0.9 x 0.6 = 0.54 against 0.6 x 0.95 = 0.57).
    ("saddle", (10, 20, 50, 60), 0.90, {"damaged": 0.6}),
    ("saddle", (12, 22, 52, 62), 0.60, {"intact": 0.95}),
    ("bell", (100, 100, 110, 112), 0.80, {"absent": 0.9}),
    ("chain", (30, 150, 130, 170), 0.95, {"intact": 0.8}),
    ("lock", (200, 150, 220, 170), 0.70, {"occluded": 0.7}),
    ("front_light", (250, 40, 270, 60), 0.99, {"damaged": 0.97}),
    # Below the threshold: ignored, so kickstand is not_found.
    ("kickstand", (150, 200, 160, 230), 0.30, {"damaged": 0.99}),
]


@pytest.fixture
def report(instances_factory):
    return build_report("bike.jpg", instances_factory((240, 320), DETECTIONS), PART_NAMES, 0.5)


def _part(report, name):
    (row,) = [p for p in report["parts"] if p["part"] == name]
    return row


def test_every_part_has_one_row_in_part_order(report):
    assert [p["part"] for p in report["parts"]] == list(PART_NAMES)
    assert (report["height"], report["width"]) == (240, 320)


def test_highest_scoring_detection_gives_the_verdict(report):
    saddle = _part(report, "saddle")
    assert saddle["verdict"] == "damaged"
    assert saddle["score"] == pytest.approx(0.9)
    assert saddle["state_probability"] == pytest.approx(0.6)
    assert saddle["confidence"] == pytest.approx(0.9 * 0.6, abs=1e-4)
    assert saddle["box"] == pytest.approx([10, 20, 40, 40])
    assert sum(saddle["state_scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert _part(report, "bell")["verdict"] == "absent"
    assert _part(report, "chain")["verdict"] == "intact"
    assert _part(report, "lock")["verdict"] == "occluded"


def test_parts_without_a_detection_above_threshold_are_not_found(report):
    kickstand = _part(report, "kickstand")
    assert kickstand["verdict"] == NOT_FOUND
    assert kickstand["confidence"] == 0.0 and kickstand["box"] is None
    assert report["counts"] == {"intact": 1, "damaged": 2, "absent": 1, "occluded": 1,
                                "not_found": len(PART_NAMES) - 5}


def test_attention_lists_damaged_and_absent_by_confidence_then_not_found(report):
    attention = [(a["part"], a["verdict"]) for a in report["attention"]]
    # front_light 0.99*0.97=0.96, bell 0.8*0.9=0.72, saddle 0.54.
    assert attention[:3] == [("front_light", "damaged"), ("bell", "absent"),
                             ("saddle", "damaged")]
    confidences = [a["confidence"] for a in report["attention"][:3]]
    assert confidences == sorted(confidences, reverse=True)
    # Then every part without a verdict, in part order: never silently dropped.
    found = {"saddle", "bell", "chain", "lock", "front_light"}
    assert attention[3:] == [(p, NOT_FOUND) for p in PART_NAMES if p not in found]
    assert report["attention"][3]["reason"] == "not found: missing or not in the photo"


def test_attention_lists_wheels_photographed_without_wheels(instances_factory):
    detections = [(p, (10, 10, 50, 50), 0.9, {"intact": 0.9}) for p in PART_NAMES
                  if p not in ("front_wheel", "back_wheel")]
    report = build_report("no_wheels.jpg", instances_factory((240, 320), detections),
                          PART_NAMES, 0.5)
    assert [(a["part"], a["verdict"]) for a in report["attention"]] == [
        ("back_wheel", NOT_FOUND), ("front_wheel", NOT_FOUND)]


def test_parts_not_found_are_listed_in_the_models_part_order():
    """Another dataset's parts, not in alphabetical order: the attention list follows the
    model's order of parts, as the rows do."""
    from prediction_builders import prediction_instances

    names = ["wheel", "saddle", "bell"]
    report = build_report("bare.jpg", prediction_instances((100, 80), [], [], [], []), names,
                          0.5)
    assert [p["part"] for p in report["parts"]] == names
    assert [a["part"] for a in report["attention"]] == names


def test_threshold_changes_verdicts(instances_factory):
    inst = instances_factory((240, 320), DETECTIONS)
    low = build_report("bike.jpg", inst, PART_NAMES, 0.2)
    assert _part(low, "kickstand")["verdict"] == "damaged"
    high = build_report("bike.jpg", inst, PART_NAMES, 0.92)
    assert {p["part"] for p in high["parts"] if p["verdict"] != NOT_FOUND} == {
        "front_light", "chain"}


def test_image_without_detections(instances_factory):
    report = build_report("empty.png", instances_factory((100, 80), []), PART_NAMES, 0.5)
    assert all(p["verdict"] == NOT_FOUND for p in report["parts"])
    assert [a["part"] for a in report["attention"]] == list(PART_NAMES)


def test_write_reports_json_and_csv(tmp_path, report, instances_factory):
    other = build_report("b/other.png", instances_factory((50, 60), []), PART_NAMES, 0.5)
    errors = [{"file_name": "bad.jpg", "error": "bad.jpg: cannot read image"}]
    json_path, csv_path = write_reports([report, other], str(tmp_path), errors=errors,
                                        operating_point=OperatingPoint(0.5))
    assert sorted(os.listdir(tmp_path)) == ["report.csv", "report.json"]  # no temp files left
    with open(json_path) as f:
        doc = json.load(f)
    assert doc["num_images"] == 2 and doc["images_needing_attention"] == 2
    assert doc["errors"] == errors and doc["score_threshold"] == 0.5
    assert doc["verdict_rule"]["presence_thresh"] is None
    assert doc["images"][0]["attention"][0]["part"] == "front_light"
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 2 * len(PART_NAMES)
    saddle = [r for r in rows if r["file_name"] == "bike.jpg" and r["part"] == "saddle"][0]
    assert saddle["verdict"] == "damaged"
    assert float(saddle["box_w"]) == pytest.approx(40)
    assert float(saddle["p_damaged"]) == pytest.approx(0.6, abs=1e-3)
    missing = [r for r in rows if r["file_name"] == "b/other.png"]
    assert {r["verdict"] for r in missing} == {NOT_FOUND}
    assert missing[0]["box_x"] == ""


def test_thresholds_json_changes_the_verdicts(tmp_path, instances_factory):
    # saddle: P(present) 0.9 x (1 - 0.15) = 0.765 < 0.81 -> absent under the calibrated rule;
    # chain: P(intact) 0.6, P(damaged) 0.4 -> damaged with the damaged bias 0.5 (log 1.5 < 0.5).
    OperatingPoint(0.5, 0.81, (0.0, 0.5, 0.0, 0.0)).save(str(tmp_path / "thresholds.json"))
    calibrated = load_operating_point("", str(tmp_path / "model_best.pth"))
    detections = [("saddle", (10, 20, 50, 60), 0.9, {"intact": 0.85, "absent": 0.15}),
                  ("chain", (30, 150, 130, 170), 0.95, {"intact": 0.6, "damaged": 0.4})]
    instances = instances_factory((240, 320), detections)

    def verdicts(report):
        return {p["part"]: p["verdict"] for p in report["parts"] if p["part"] in
                ("saddle", "chain")}

    assert verdicts(build_report("a.jpg", instances, PART_NAMES, 0.5)) == {
        "saddle": "intact", "chain": "intact"}
    report = build_report("a.jpg", instances, PART_NAMES, calibrated)
    assert verdicts(report) == {"saddle": "absent", "chain": "damaged"}
    assert _part(report, "saddle")["confidence"] == pytest.approx(0.9 * 0.15, abs=1e-4)
