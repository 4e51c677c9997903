"""BikeStateCheckpointer: safe loading, the pickle policy, clear errors, partial loading report."""
import argparse
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model

from bikestate.checkpoint import BikeStateCheckpointer, is_model_zoo_url
from bikestate.utils.errors import WeightsError

from modeling_cases import MLP_HEAD_OPTS, make_cfg

# A tiny detector keeps these tests fast: the policy does not depend on the model's size.
TINY_MODEL = ["MODEL.RESNETS.DEPTH", 18, "MODEL.FPN.OUT_CHANNELS", 32,
              "MODEL.ROI_BOX_HEAD.FC_DIM", 64, "MODEL.ROI_STATE_HEAD.HIDDEN_DIM", 16,
              *MLP_HEAD_OPTS]


def tiny_model(num_classes=22, seed=0):
    torch.manual_seed(seed)
    return build_model(make_cfg(opts=TINY_MODEL + ["MODEL.ROI_HEADS.NUM_CLASSES", num_classes]))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A 22-part model saved as a .pth checkpoint and as a detectron2-style pickle."""
    folder = tmp_path_factory.mktemp("weights")
    model = tiny_model(seed=1)
    BikeStateCheckpointer(model, str(folder)).save("model_22parts")
    pkl = folder / "model_22parts.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in model.state_dict().items()},
                     "__author__": "bikestate test"}, f)
    return {"model": model, "pth": str(folder / "model_22parts.pth"), "pkl": str(pkl)}


def same_weights(a, b, key):
    return torch.equal(a.state_dict()[key], b.state_dict()[key])


def test_pth_loads_with_weights_only_and_restores_every_tensor(saved_model, monkeypatch):
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    target = tiny_model(seed=2)
    key = "roi_heads.state_head.fc_hidden.weight"
    assert not same_weights(target, saved_model["model"], key)
    checkpointer = BikeStateCheckpointer(target)
    checkpointer.load(saved_model["pth"])
    assert calls == [True]
    assert all(same_weights(target, saved_model["model"], k) for k in target.state_dict())
    report = checkpointer.last_load_report
    assert report["loaded"] == report["total"] and not report["skipped_shape"]


def test_pth_holding_python_objects_is_refused_unless_allowed(tmp_path):
    model = tiny_model()
    path = tmp_path / "with_object.pth"
    # Any class instance: unpickling such objects could run code, weights_only refuses them.
    torch.save({"model": model.state_dict(), "extra": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(WeightsError, match="ALLOW_PICKLED_WEIGHTS"):
        BikeStateCheckpointer(tiny_model()).load(str(path))
    BikeStateCheckpointer(tiny_model(), allow_pickled=True).load(str(path))


def test_local_pickle_is_refused_with_how_to_allow(saved_model):
    with pytest.raises(WeightsError) as err:
        BikeStateCheckpointer(tiny_model()).load(saved_model["pkl"])
    message = str(err.value)
    assert "refusing to load pickled weights" in message and saved_model["pkl"] in message
    assert "MODEL.ALLOW_PICKLED_WEIGHTS True" in message
    assert "\n" not in message


def test_local_pickle_loads_when_allowed(saved_model):
    target = tiny_model(seed=3)
    BikeStateCheckpointer(target, allow_pickled=True).load(saved_model["pkl"])
    assert all(same_weights(target, saved_model["model"], k) for k in target.state_dict())


def test_model_zoo_urls_are_the_only_trusted_pickle_sources():
    assert is_model_zoo_url(
        "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl")
    assert is_model_zoo_url("https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/R-50.pkl")
    assert not is_model_zoo_url("https://dl.fbaipublicfiles.com/detectron2/../evil/x.pkl")
    assert not is_model_zoo_url("http://dl.fbaipublicfiles.com/detectron2/x.pkl")
    assert not is_model_zoo_url("https://example.com/detectron2/x.pkl")
    assert not is_model_zoo_url("/home/user/detectron2/x.pkl")


def test_download_failure_is_one_line_naming_the_url_and_the_way_out(tmp_path, monkeypatch):
    # Nothing is cached there, and ".invalid" never resolves: a download that must fail,
    # offline or online.
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    for url in ("https://weights.bikestate.invalid/model_final.pth",
                "detectron2://bikestate-test-does-not-exist/model_final.pkl"):
        with pytest.raises(WeightsError) as err:
            BikeStateCheckpointer(tiny_model()).load(url)
        message = str(err.value)
        assert "\n" not in message
        assert "cannot download weights" in message
        assert url.split("://", 1)[1].split("/", 1)[1] in message
        assert 'MODEL.WEIGHTS ""' in message


def test_remote_pickle_outside_the_model_zoo_is_refused_before_downloading():
    with pytest.raises(WeightsError, match="refusing to load pickled weights"):
        BikeStateCheckpointer(tiny_model()).load("https://example.com/model.pkl")


def test_coco_like_weights_keep_matching_tensors_and_report_class_specific_ones(
        saved_model, caplog):
    # The 22-part file into a 5-part model: as COCO's 80 classes into the 22 parts.
    target = tiny_model(num_classes=5, seed=4)
    checkpointer = BikeStateCheckpointer(target)
    with caplog.at_level(logging.INFO):
        checkpointer.load(saved_model["pth"])
    report = checkpointer.last_load_report
    skipped = {k for k, _, _ in report["skipped_shape"]}
    assert skipped == {
        "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias",
    }
    shapes = {k: (a, b) for k, a, b in report["skipped_shape"]}
    assert shapes["roi_heads.box_predictor.cls_score.weight"] == ((23, 64), (6, 64))
    assert report["loaded"] == report["total"] - 4
    for key in target.state_dict():
        if key not in skipped and key not in ("pixel_mean", "pixel_std"):
            assert same_weights(target, saved_model["model"], key), key
    log = caplog.text
    assert f"Loaded {report['loaded']} of {report['total']} model tensors" in log
    assert "roi_heads.box_predictor.cls_score.weight: (23, 64) in the file, (6, 64)" in log


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2))
    path = tmp_path / "classifier.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(WeightsError, match="matches none of the model's"):
        BikeStateCheckpointer(tiny_model()).load(str(path))


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    missing = tmp_path / "nope" / "model_final.pth"
    with pytest.raises(WeightsError, match="weights file not found: .*model_final.pth"):
        BikeStateCheckpointer(tiny_model()).load(str(missing))
    corrupt = tmp_path / "truncated.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="cannot read weights file .*truncated.pth"):
        BikeStateCheckpointer(tiny_model()).load(str(corrupt))
    not_weights = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_weights)
    with pytest.raises(WeightsError, match="expected a dict"):
        BikeStateCheckpointer(tiny_model()).load(str(not_weights))


def test_empty_weights_means_from_scratch():
    model = tiny_model(seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert BikeStateCheckpointer(model).load("") == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_restores_checkpointables(tmp_path):
    model = tiny_model(seed=6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    BikeStateCheckpointer(model, str(tmp_path), optimizer=optimizer).save("model_0000009",
                                                                          iteration=9)
    model2 = tiny_model(seed=7)
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    checkpointer = BikeStateCheckpointer(model2, str(tmp_path), optimizer=optimizer2)
    extra = checkpointer.resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    assert optimizer2.state_dict()["state"][0]["momentum_buffer"].abs().sum() > 0
    np.testing.assert_array_equal(
        model2.state_dict()["roi_heads.state_head.fc_hidden.weight"].numpy(),
        model.state_dict()["roi_heads.state_head.fc_hidden.weight"].numpy())
    assert os.path.isfile(tmp_path / "last_checkpoint")
