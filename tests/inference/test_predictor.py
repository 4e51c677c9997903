"""BikeStatePredictor on the real small CPU model: batches, original pixels, weights, checks."""
import numpy as np
import pytest
import torch

from bikestate.constants import PART_NAMES
from bikestate.inference import BikeStatePredictor
from bikestate.utils.errors import ConfigError, WeightsError


@pytest.fixture(scope="module")
def predictor(small_cfg):
    torch.manual_seed(0)
    return BikeStatePredictor(small_cfg())


def _image(h, w, seed):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_predictions_have_states_on_cpu(predictor):
    inst = predictor(_image(120, 160, 0))
    assert inst.image_size == (120, 160)
    assert len(inst) > 0
    for field in ("pred_boxes", "scores", "pred_classes", "pred_states", "state_scores"):
        assert inst.has(field)
    assert inst.scores.device.type == "cpu"
    assert inst.pred_states.dtype == torch.int64
    assert inst.state_scores.shape == (len(inst), 4)
    torch.testing.assert_close(inst.state_scores.sum(dim=1), torch.ones(len(inst)))
    assert predictor.part_names == list(PART_NAMES)


def test_batch_gives_the_same_as_one_by_one(predictor):
    images = [_image(120, 160, s) for s in (1, 2, 3)]
    batched = predictor.predict_batch(images, batch_size=2)
    assert len(batched) == 3
    for image, got in zip(images, batched):
        single = predictor(image)
        assert len(got) == len(single)
        torch.testing.assert_close(got.pred_boxes.tensor, single.pred_boxes.tensor,
                                   atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(got.state_scores, single.state_scores, atol=1e-4, rtol=1e-4)


def test_boxes_are_in_original_pixels_of_a_large_image(predictor):
    # 600x900 is shrunk to 128x192 for the model; boxes must come back in 600x900 pixels.
    inst = predictor(_image(600, 900, 4))
    assert inst.image_size == (600, 900)
    boxes = inst.pred_boxes.tensor
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 900).all() and (boxes[:, 3] <= 600).all()
    assert boxes[:, 2].max() > 192 and boxes[:, 3].max() > 128


def test_weights_are_loaded(tmp_path, predictor, small_cfg):
    torch.manual_seed(123)
    reference = BikeStatePredictor(small_cfg()).model
    path = str(tmp_path / "model.pth")
    torch.save({"model": reference.state_dict()}, path)
    loaded = BikeStatePredictor(small_cfg(**{"MODEL.WEIGHTS": path})).model
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, msg=name)
    assert not torch.equal(predictor.model.state_dict()["roi_heads.box_predictor.cls_score.weight"],
                           reference.state_dict()["roi_heads.box_predictor.cls_score.weight"])


def test_missing_weights_file_is_one_line_error(tmp_path, small_cfg):
    with pytest.raises(WeightsError, match="not found"):
        BikeStatePredictor(small_cfg(**{"MODEL.WEIGHTS": str(tmp_path / "nope.pth")}))


def test_weights_of_another_class_count_are_refused(tmp_path, predictor, small_cfg):
    # Training may start from such a file; predicting with untrained class layers may not.
    state = dict(predictor.model.state_dict())
    state["roi_heads.box_predictor.cls_score.weight"] = state[
        "roi_heads.box_predictor.cls_score.weight"][:6]
    state["roi_heads.box_predictor.cls_score.bias"] = state[
        "roi_heads.box_predictor.cls_score.bias"][:6]
    path = str(tmp_path / "five_parts.pth")
    torch.save({"model": state}, path)
    with pytest.raises(WeightsError, match="does not fit the config") as e:
        BikeStatePredictor(small_cfg(**{"MODEL.WEIGHTS": path}))
    assert any("cls_score.weight" in line for line in e.value.details)


def test_class_count_must_match_part_names(small_cfg):
    with pytest.raises(ConfigError, match="NUM_CLASSES is 5"):
        BikeStatePredictor(small_cfg(**{"MODEL.ROI_HEADS.NUM_CLASSES": 5}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's message")
def test_cuda_without_gpu_is_a_config_error(small_cfg):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        BikeStatePredictor(small_cfg(**{"MODEL.DEVICE": "cuda"}))


@pytest.mark.parametrize("h, w", [(1, 1), (1, 500), (500, 1), (3, 500), (7, 3000), (15, 9)])
def test_any_size_and_aspect_ratio(predictor, h, w):
    # At MIN_SIZE_TEST 128 / MAX_SIZE_TEST 192 a 1x500 photo is 0.4x192 for the model: it is
    # seen 1 pixel high, and its boxes still come back in the photo's pixels.
    inst = predictor(_image(h, w, 6))
    assert inst.image_size == (h, w)
    boxes = inst.pred_boxes.tensor
    assert len(boxes) > 0
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] <= boxes[:, 2]).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 1] <= boxes[:, 3]).all()


def test_the_report_gives_the_verdicts_the_evaluator_scores_under_a_calibrated_vote(
        tmp_path, small_cfg):
    """A thresholds.json as the calibration writes it (the ``vote`` presence rule, a score
    threshold above the detector's): the predictor of tools/predict.py and the service
    (``predictor_config``) keeps every box the evaluator sees, so each part's vote counts the
    same boxes and the report's verdicts are the evaluator's (``part_verdicts`` over the
    model's outputs at the config's threshold)."""
    import os

    from bikestate.inference import build_report, predictor_config
    from bikestate.verdict import OperatingPoint, part_verdicts, verdict_name

    torch.manual_seed(7)
    cfg = small_cfg()
    evaluated = BikeStatePredictor(cfg)
    weights = str(tmp_path / "model_final.pth")
    torch.save({"model": evaluated.model.state_dict()}, weights)
    images = [_image(120, 160, seed) for seed in range(4)]
    outputs = [evaluated(image) for image in images]
    scores = torch.cat([o.scores for o in outputs]).numpy()
    score_thresh = float(np.median(scores))

    def rule(instances, point):
        return part_verdicts(instances.scores.numpy(), instances.pred_classes.numpy(),
                             instances.state_scores.numpy(), len(PART_NAMES), point)

    # The presence threshold at the median vote of the found parts: verdicts on both sides.
    votes = np.concatenate([rule(o, OperatingPoint(score_thresh))["vote"] for o in outputs])
    point = OperatingPoint(score_thresh, float(np.median(votes[votes > 0])), presence="vote")
    point.save(os.path.join(tmp_path, "thresholds.json"))
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.01

    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "bike_small_cpu.yaml")
    # make_small_cfg's settings, as a user passes them to tools/predict.py.
    opts = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.01", "MODEL.WEIGHTS", weights]
    report_cfg, report_point = predictor_config(config, opts)
    assert report_point.presence == "vote"
    reporter = BikeStatePredictor(report_cfg, operating_point=report_point)
    said = []
    for image, output in zip(images, outputs):
        report = build_report("bike.png", reporter(image), PART_NAMES, report_point)
        expected = [verdict_name(v) for v in rule(output, point)["verdict"]]
        assert [p["verdict"] for p in report["parts"]] == expected
        said += expected
    assert "absent" in said and len(set(said)) > 1, said  # the vote decided both ways
