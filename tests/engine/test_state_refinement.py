"""The state-head refinement stage (``SOLVER.STATE_REFINE``): which boxes it trains on, that it
trains the state head alone, and that training runs it after the last iteration, before the
evaluation that the best checkpoint and the calibration use."""
import json

import pytest
import torch

from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from bikestate.engine.state_refinement import (
    _matched_detections,
    build_refinement_loader,
    collect_state_examples,
    refine_state_head,
)

STATE_HEAD = "roi_heads.state_head."


def test_a_detection_takes_the_state_of_its_own_parts_box_at_the_match_iou():
    targets = Instances((100, 100))
    targets.gt_boxes = Boxes(torch.tensor([[0., 0, 10, 10], [20, 20, 40, 40], [0, 0, 10, 10]]))
    targets.gt_classes = torch.tensor([3, 5, 5])
    found = Instances((100, 100))
    found.pred_boxes = Boxes(torch.tensor([
        [0., 0, 10, 10],   # part 3 on part 3's box: row 0
        [0, 0, 10, 10],    # part 5 on that same place: part 5's box there, row 2
        [20, 20, 40, 40],  # part 3 on part 5's box only: not its part
        [22, 22, 40, 40],  # part 5, IoU 324 / 400 = 0.81 with row 1
        [30, 30, 50, 50],  # part 5, IoU 100 / 700 with row 1: off the part
    ]))
    found.pred_classes = torch.tensor([3, 5, 3, 5, 5])
    found.scores = torch.full((5,), 0.9)

    keep, rows = _matched_detections(found, targets, match_iou=0.5)
    assert keep.tolist() == [True, True, False, True, False]
    assert rows[keep].tolist() == [0, 2, 1]
    keep, _ = _matched_detections(found, targets, match_iou=0.9)
    assert keep.tolist() == [True, True, False, False, False]
    keep, _ = _matched_detections(found, targets[:0], match_iou=0.5)  # no annotations
    assert not keep.any()


@pytest.fixture
def tiny_setup(train_net, make_args, tmp_path):
    """(cfg, model): the tiny small-config model, random weights, and its registered data."""
    from bikestate.engine import BikeStateTrainer

    cfg = train_net.setup(make_args(tmp_path / "run", "SEED", "5"))
    return cfg, BikeStateTrainer.build_model(cfg)


def test_examples_hold_every_annotated_box_with_its_state(tiny_setup):
    cfg, model = tiny_setup
    examples = collect_state_examples(model, build_refinement_loader(cfg))
    annotations = [a for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0]) for a in d["annotations"]]
    annotated = ~examples.from_detections
    assert int(annotated.sum()) == len(annotations)
    assert torch.bincount(examples.states[annotated], minlength=4).tolist() == \
        torch.bincount(torch.tensor([a["state"] for a in annotations]), minlength=4).tolist()
    resolution = cfg.MODEL.ROI_STATE_HEAD.POOLER_RESOLUTION
    assert examples.inputs.shape == (len(examples), 3, resolution, resolution)
    assert examples.inputs.dtype == torch.float16
    assert model.training  # its mode is restored


def test_refinement_trains_the_state_head_alone_and_fits_its_examples(tiny_setup):
    cfg, model = tiny_setup
    cfg.defrost()
    cfg.SOLVER.STATE_REFINE.EPOCHS = 30
    cfg.SOLVER.STATE_REFINE.BATCH_SIZE = 32
    # A random detector finds next to nothing: the annotated boxes are what it trains on here.
    cfg.SOLVER.STATE_REFINE.GT_BOXES = True
    before = {k: v.clone() for k, v in model.state_dict().items()}
    figures = refine_state_head(cfg, model)

    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(STATE_HEAD) for k in changed), sorted(changed)[:5]
    assert figures["loss_last"] < 0.7 * figures["loss_first"], figures
    # What it learnt: the examples' states, well above always answering the commonest one.
    examples = collect_state_examples(model, build_refinement_loader(cfg))
    model.eval()
    with torch.no_grad():
        logits = model.roi_heads.state_head(examples.inputs.float(), examples.classes)
    accuracy = float((logits.argmax(dim=1) == examples.states).float().mean())
    majority = float(torch.bincount(examples.states).max()) / len(examples)
    assert accuracy > majority + 0.15, (accuracy, majority)


def test_training_refines_after_the_last_iteration_and_evaluates_the_refined_head(
        train_net, make_args, tmp_path):
    finals, results = {}, {}
    for epochs in (0, 3):
        out = tmp_path / f"epochs{epochs}"
        results[epochs] = train_net.main(make_args(
            out, "SEED", "5", "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "4",
            "SOLVER.STATE_REFINE.EPOCHS", epochs, "SOLVER.STATE_REFINE.GT_BOXES", "True"))
        finals[epochs] = torch.load(out / "model_final.pth", weights_only=True)["model"]
    detector = [k for k in finals[0] if not k.startswith(STATE_HEAD)]
    assert all(torch.equal(finals[0][k], finals[3][k]) for k in detector)
    assert any(not torch.equal(finals[0][k], finals[3][k]) for k in finals[0]
               if k.startswith(STATE_HEAD))

    with open(tmp_path / "epochs3" / "metrics.json") as f:
        last = [json.loads(line) for line in f][-1]
    assert last["iteration"] == 3
    assert last["state_refine/examples"] - last["state_refine/detections"] == 8 * 22
    assert last["state_refine/loss_last"] < last["state_refine/loss_first"]
    # The last evaluation is the refined model's: --eval-only on model_final.pth repeats its
    # state figures (its verdicts differ: --eval-only applies the calibrated thresholds.json).
    again = train_net.main(make_args(tmp_path / "eval", "MODEL.WEIGHTS",
                                     tmp_path / "epochs3" / "model_final.pth", eval_only=True))
    for key in ("state_gt", "state"):
        assert again[key] == pytest.approx(results[3][key], nan_ok=True)
    assert again["state_gt"] != pytest.approx(results[0]["state_gt"], nan_ok=True)


def test_nothing_to_refine_on_leaves_the_state_head_as_it_is(tiny_setup):
    """A detector that reports nothing: detections alone give no example."""
    cfg, model = tiny_setup
    model.roi_heads.box_predictor.test_score_thresh = 1.01  # no score reaches it
    cfg.defrost()
    cfg.SOLVER.STATE_REFINE.EPOCHS = 2
    cfg.SOLVER.STATE_REFINE.GT_BOXES = False
    before = {k: v.clone() for k, v in model.state_dict().items()}
    figures = refine_state_head(cfg, model)
    assert figures["examples"] == 0 and "loss_last" not in figures
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_earlier_best_checkpoint_gets_its_state_head_refined_too(train_net, make_args,
                                                                     tmp_path):
    """``bbox/AP`` of a random model is 0 at both evaluations, so the first stays the best:
    model_best.pth holds iteration 1's detector with a refined state head, not iteration 1's
    weights as they were (what the calibration and tools/predict.py would otherwise load)."""
    out = tmp_path / "run"
    train_net.main(make_args(
        out, "SEED", "5", "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2",
        "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.STATE_REFINE.EPOCHS", "3",
        "SOLVER.STATE_REFINE.GT_BOXES", "True", "TEST.BEST_CHECKPOINT.METRIC", "bbox/AP",
        "TEST.BEST_CHECKPOINT.MODE", "max"))
    best = torch.load(out / "model_best.pth", weights_only=True)
    assert best["iteration"] == 1
    at_best = torch.load(out / "model_0000001.pth", weights_only=True)["model"]
    detector = [k for k in at_best if not k.startswith(STATE_HEAD)]
    assert all(torch.equal(at_best[k], best["model"][k]) for k in detector)
    assert any(not torch.equal(at_best[k], best["model"][k]) for k in at_best
               if k.startswith(STATE_HEAD))


def test_zero_epochs_refines_nothing_and_runs_no_detector_pass(tiny_setup):
    cfg, model = tiny_setup
    cfg.defrost()
    cfg.SOLVER.STATE_REFINE.EPOCHS = 0
    cfg.DATASETS.TRAIN = ("no_such_dataset",)  # a detector pass would fail on it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert refine_state_head(cfg, model)["examples"] == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_unreadable_image_is_skipped_and_the_one_standing_in_counts_once(tiny_setup,
                                                                            tmp_path):
    """detectron2's MapDataset yields another image in place of one the mapper cannot read:
    the examples hold each readable image's annotated boxes once."""
    import copy

    from detectron2.data import get_detection_dataset_dicts

    from bikestate.data.mapper import build_annotated_test_loader

    cfg, model = tiny_setup
    dataset = copy.deepcopy(get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False))
    dataset[0]["file_name"] = str(tmp_path / "vanished.jpg")
    examples = collect_state_examples(
        model, build_annotated_test_loader(cfg, dataset, skip_unreadable=True))
    readable = sum(len(d["annotations"]) for d in dataset[1:])
    assert int((~examples.from_detections).sum()) == readable
