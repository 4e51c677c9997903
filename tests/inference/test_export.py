"""predictions.json records and their conversion into COCO results (BikeStateEvaluator's)."""
import pytest
from pycocotools.coco import COCO

from coco_builders import coco_annotation, coco_with_states

from bikestate.constants import PART_NAMES, STATE_NAMES
from bikestate.inference import instances_to_records, predictions_to_coco_results
from bikestate.utils.errors import DataError


@pytest.fixture
def records(instances_factory):
    inst = instances_factory((240, 320), [
        ("saddle", (10, 20, 50, 60), 0.9, {"damaged": 0.7}),
        ("bell", (100.5, 100, 110, 112.25), 0.8, {"absent": 0.9}),
    ])
    return (instances_to_records("run/photos/a.jpg", inst, PART_NAMES)
            + instances_to_records("photos/b.jpg", inst[:1], PART_NAMES))


def _ground_truth():
    # Category ids deliberately not index + 1: parts are matched by name.
    return coco_with_states(
        [{"id": 7, "file_name": "photos/a.jpg", "height": 240, "width": 320},
         {"id": 9, "file_name": "b.jpg", "height": 240, "width": 320}],
        [coco_annotation(1, 7, 100 + PART_NAMES.index("saddle"), [10, 20, 50, 60], 1)],
        categories=[{"id": 100 + i, "name": n} for i, n in enumerate(PART_NAMES)])


def test_records_hold_part_box_state_and_probabilities(records):
    saddle = records[0]
    assert saddle["file_name"] == "run/photos/a.jpg"
    assert saddle["part"] == "saddle" and saddle["category_id"] == PART_NAMES.index("saddle") + 1
    assert saddle["bbox"] == [10, 20, 40, 40]
    assert saddle["state"] == "damaged" and saddle["state_id"] == 1
    assert list(saddle["state_scores"]) == list(STATE_NAMES)
    assert sum(saddle["state_scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert records[1]["bbox"] == pytest.approx([100.5, 100, 9.5, 12.25])


def test_conversion_matches_images_by_path_suffix_and_parts_by_name(records):
    results = predictions_to_coco_results({"detections": records}, _ground_truth())
    assert [r["image_id"] for r in results] == [7, 7, 9]
    assert results[0]["category_id"] == 100 + PART_NAMES.index("saddle")
    assert results[0]["state"] == 1 and results[0]["state_name"] == "damaged"
    assert results[0]["state_scores"][1] == pytest.approx(0.7, abs=1e-4)
    # pycocotools takes them as detection results.
    coco = COCO()
    coco.dataset = _ground_truth()
    coco.createIndex()
    dt = coco.loadRes(results)
    assert len(dt.getAnnIds(imgIds=[7])) == 2


def test_unknown_image_or_part_is_a_data_error(records):
    gt = _ground_truth()
    gt["images"] = gt["images"][:1]
    with pytest.raises(DataError, match="not in the ground truth"):
        predictions_to_coco_results(records, gt)
    gt = _ground_truth()
    gt["categories"] = [c for c in gt["categories"] if c["name"] != "bell"]
    with pytest.raises(DataError, match="bell"):
        predictions_to_coco_results(records, gt)


def test_ambiguous_file_names_are_refused(records):
    gt = _ground_truth()
    gt["images"].append({"id": 11, "file_name": "other/b.jpg", "height": 1, "width": 1})
    with pytest.raises(DataError, match="share"):
        predictions_to_coco_results(records, gt)
