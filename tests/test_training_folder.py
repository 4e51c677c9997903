"""A training folder's config and weights, as every tool that takes one finds them."""
import os

import pytest

from bikestate.checkpoint import resolve_training_folder, training_folder_weights
from bikestate.utils.errors import ConfigError


def _folder(tmp_path, *names):
    folder = tmp_path / "train"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    return str(folder)


def test_prefers_the_best_checkpoint(tmp_path):
    folder = _folder(tmp_path, "config.yaml", "model_final.pth", "model_best.pth")
    assert resolve_training_folder(folder) == (os.path.join(folder, "config.yaml"),
                                               os.path.join(folder, "model_best.pth"))


def test_falls_back_to_the_final_checkpoint(tmp_path):
    folder = _folder(tmp_path, "config.yaml", "model_final.pth", "model_0000399.pth")
    assert training_folder_weights(folder) == os.path.join(folder, "model_final.pth")


def test_a_given_config_overrides_the_folders(tmp_path):
    folder = _folder(tmp_path, "model_final.pth")
    assert resolve_training_folder(folder, "configs/x.yaml")[0] == "configs/x.yaml"


@pytest.mark.parametrize("names, message", [
    (("config.yaml", "model_0000399.pth"), "no model_best.pth or model_final.pth"),
    (("model_best.pth",), "no config.yaml in this folder"),
])
def test_what_is_missing_is_said(tmp_path, names, message):
    folder = _folder(tmp_path, *names)
    with pytest.raises(ConfigError, match=message):
        resolve_training_folder(folder)
    assert training_folder_weights(str(tmp_path)) is None


def test_a_missing_folder_is_said(tmp_path):
    with pytest.raises(ConfigError, match="no such training folder"):
        resolve_training_folder(str(tmp_path / "nowhere"))
