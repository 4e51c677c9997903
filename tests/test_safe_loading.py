"""Safe loading of weights: no code runs while a weights file is read, unless the user allows it.

A weights file that would run code when unpickled carries a payload that creates a marker file;
each refusal is checked by the marker's absence, and the same file loaded with
``MODEL.ALLOW_PICKLED_WEIGHTS True`` creates the marker, which shows the payload is live (a
refusal test with a dead payload could not fail). The policy itself (weights_only ``torch.load``
of ``.pth``, refused local ``.pkl`` with its how-to, model-zoo URL rules, download failures) is
also covered in ``tests/modeling/test_checkpoint.py``; this file adds the code-execution proofs,
the model-zoo acceptance from a real (pre-filled) download cache, the config switch as the tools
pass it, and files of another network on a FrozenBN model.
"""
import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from bikestate.checkpoint import BikeStateCheckpointer, check_weights
from bikestate.config import add_bikestate_config
from bikestate.inference import BikeStatePredictor
from bikestate.utils.errors import WeightsError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(REPO, "configs", "Base-BikeState-RCNN-FPN.yaml")
# A tiny detector: the loading policy does not depend on the model's size.
TINY = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
        "MODEL.ROI_STATE_HEAD.HIDDEN_DIM", 16, "INPUT.MIN_SIZE_TEST", 64,
        "INPUT.MAX_SIZE_TEST", 96]


def make_cfg(*opts, norm="GN"):
    cfg = get_cfg()
    add_bikestate_config(cfg)
    cfg.merge_from_file(BASE_CONFIG)
    cfg.merge_from_list(TINY + ["MODEL.RESNETS.NORM", norm, "MODEL.BACKBONE.FREEZE_AT", 0,
                                *opts])
    return cfg


def tiny_model(seed=0, norm="GN"):
    torch.manual_seed(seed)
    return build_model(make_cfg(norm=norm))


class WritesMarkerWhenUnpickled:
    """Unpickling this object calls ``open(path, "w")``: it creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A model, and its weights as a plain .pth and as a detectron2-style .pkl (numpy)."""
    folder = tmp_path_factory.mktemp("weights")
    model = tiny_model(seed=1)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    with open(folder / "model.pkl", "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in model.state_dict().items()},
                     "__author__": "bikestate test"}, f)
    return {"model": model, "pth": str(folder / "model.pth"), "pkl": str(folder / "model.pkl")}


def same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------- no code runs while loading


def test_pth_that_would_run_code_is_refused_without_running_it(tmp_path, weights):
    marker = tmp_path / "marker"
    path = tmp_path / "payload.pth"
    torch.save({"model": weights["model"].state_dict(),
                "payload": WritesMarkerWhenUnpickled(marker)}, path)
    with pytest.raises(WeightsError) as err:
        BikeStateCheckpointer(tiny_model()).load(str(path))
    assert str(path) in str(err.value) and "could run code" in str(err.value)
    assert "MODEL.ALLOW_PICKLED_WEIGHTS True" in str(err.value)
    assert not marker.exists()

    # The user's explicit permission unpickles fully: the payload runs (so it is a live one).
    model = tiny_model(seed=3)
    BikeStateCheckpointer(model, allow_pickled=True).load(str(path))
    assert marker.exists()
    assert same_tensors(model, weights["model"])


def test_local_pkl_that_would_run_code_is_refused_without_running_it(tmp_path, weights):
    marker = tmp_path / "marker"
    path = tmp_path / "payload.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in weights["model"].state_dict().items()},
                     "__author__": "someone", "payload": WritesMarkerWhenUnpickled(marker)}, f)
    with pytest.raises(WeightsError) as err:
        BikeStateCheckpointer(tiny_model()).load(str(path))
    assert "refusing to load pickled weights" in str(err.value) and str(path) in str(err.value)
    assert "MODEL.ALLOW_PICKLED_WEIGHTS True" in str(err.value)
    assert not marker.exists()

    BikeStateCheckpointer(tiny_model(), allow_pickled=True).load(str(path))
    assert marker.exists()


def test_check_weights_runs_no_code_either(tmp_path, weights):
    """The early check of the tools goes through the same safe loader."""
    marker = tmp_path / "marker"
    path = tmp_path / "payload.pth"
    torch.save({"model": weights["model"].state_dict(),
                "payload": WritesMarkerWhenUnpickled(marker)}, path)
    with pytest.raises(WeightsError, match="could run code"):
        check_weights(make_cfg("MODEL.WEIGHTS", str(path)))
    assert not marker.exists()


# --------------------------------------------------------------- pickles: model zoo or switch


@pytest.mark.parametrize("url", [
    "detectron2://bikestate-test/model_final_123.pkl",
    "https://dl.fbaipublicfiles.com/detectron2/bikestate-test/model_final_123.pkl",
])
def test_model_zoo_pickle_is_accepted_without_the_switch(url, weights, tmp_path, monkeypatch):
    # Offline: put the file where iopath's download cache keeps model-zoo downloads, so the real
    # URL handling (detectron2:// -> https://dl.fbaipublicfiles.com/detectron2/) finds it there.
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "detectron2" / "bikestate-test" / "model_final_123.pkl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(open(weights["pkl"], "rb").read())
    model = tiny_model(seed=4)
    assert not same_tensors(model, weights["model"])
    checkpointer = BikeStateCheckpointer(model)
    checkpointer.load(url)
    assert same_tensors(model, weights["model"])
    assert checkpointer.last_load_report["loaded"] == checkpointer.last_load_report["total"]
    # The same file from a local path is not trusted.
    with pytest.raises(WeightsError, match="refusing to load pickled weights"):
        BikeStateCheckpointer(tiny_model()).load(str(cached))


def test_pickle_switch_in_the_config_reaches_the_loaders(weights):
    """MODEL.ALLOW_PICKLED_WEIGHTS as the tools pass it: check_weights (train_net) and the
    predictor (predict)."""
    refused = make_cfg("MODEL.WEIGHTS", weights["pkl"])
    with pytest.raises(WeightsError, match="refusing to load pickled weights"):
        check_weights(refused)
    with pytest.raises(WeightsError, match="refusing to load pickled weights"):
        BikeStatePredictor(refused)

    allowed = make_cfg("MODEL.WEIGHTS", weights["pkl"], "MODEL.ALLOW_PICKLED_WEIGHTS", True)
    report = check_weights(allowed)
    assert report["loaded"] == report["total"]
    predictor = BikeStatePredictor(allowed)
    assert same_tensors(predictor.model, weights["model"])


# ------------------------------------------------------------------- weights of another network


def unrelated_pth(path):
    torch.save({"model": {"encoder.layer1.weight": torch.zeros(8, 4),
                          "encoder.layer1.bias": torch.zeros(8)}}, path)
    return str(path)


@pytest.mark.parametrize("norm", ["GN", "FrozenBN"])
def test_weights_of_another_network_are_refused(norm, tmp_path):
    """FrozenBN (the COCO configs' norm) fills in running statistics a file lacks; those must
    not make a file of another network count as loaded."""
    path = unrelated_pth(tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="another architecture"):
        BikeStateCheckpointer(tiny_model(norm=norm)).load(path)
    with pytest.raises(WeightsError, match="another architecture"):
        check_weights(make_cfg("MODEL.WEIGHTS", path, norm=norm))


def test_check_weights_accepts_good_weights_and_leaves_nothing_behind(weights, tmp_path):
    before = sorted(os.listdir(os.path.dirname(weights["pth"])))
    report = check_weights(make_cfg("MODEL.WEIGHTS", weights["pth"]))
    assert report["loaded"] == report["total"] and not report["skipped_shape"]
    assert sorted(os.listdir(os.path.dirname(weights["pth"]))) == before
    assert check_weights(make_cfg("MODEL.WEIGHTS", "")) is None  # from scratch: nothing to check
