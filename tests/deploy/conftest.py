"""Fixtures of the deployment tests: a seeded small model, its ONNX export written by
tools/export_model.py, photos of every shape, and a process in which torch and detectron2
cannot be imported."""
import os
import textwrap

import numpy as np
import pytest
import torch
from deploy_helpers import REPO, SMALL_CONFIG, SMALL_OPTS, make_cfg, run_tool
from detectron2.modeling import build_model
from PIL import Image

from bikestate.synth import render_bike

# A sitecustomize that makes every import of torch, torchvision and detectron2 fail, as on a
# machine that has only onnxruntime.
_BLOCKER = textwrap.dedent('''
    import sys

    BLOCKED = ("torch", "torchvision", "detectron2")

    class BlockImports:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, BlockImports())
''')


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory):
    """A checkpoint of the small config's model, randomly initialised with seed 0."""
    path = tmp_path_factory.mktemp("weights") / "model.pth"
    torch.manual_seed(0)
    torch.save({"model": build_model(make_cfg(SMALL_CONFIG, ["MODEL.DEVICE", "cpu"]))
                .state_dict()}, str(path))
    return str(path)


@pytest.fixture(scope="session")
def small_cfg_opts(small_weights):
    """The config options of the small model: SMALL_OPTS and its weights."""
    return SMALL_OPTS + ["MODEL.WEIGHTS", small_weights]


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory, small_cfg_opts):
    """The small model exported by tools/export_model.py: ``(folder, completed process)``."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    result = run_tool("export_model.py", "--config-file", SMALL_CONFIG, "--format", "onnx",
                      "--output", str(out), *small_cfg_opts)
    assert result.returncode == 0, result.stderr
    return str(out), result


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """Folder of the PHOTOS, SynthBikes pictures saved as users' files come."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)

    def bike(height, width):
        return render_bike(rng, width, height)[0]

    Image.fromarray(bike(240, 320)).save(root / "landscape.jpg", quality=90)
    Image.fromarray(bike(320, 200)).save(root / "portrait.png")
    Image.fromarray(bike(750, 1000)).save(root / "large.jpg", quality=85)
    Image.fromarray(bike(240, 320)).convert("L").save(root / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 240 high x 320 wide: rotate to portrait
    Image.fromarray(bike(240, 320)).save(root / "phone.jpg", exif=exif)
    rgba = np.dstack([bike(240, 320), np.full((240, 320), 200, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(root / "cutout.png")
    return root


@pytest.fixture(scope="session")
def no_torch_env(tmp_path_factory):
    """Environment of a process in which importing torch, torchvision or detectron2 fails."""
    folder = tmp_path_factory.mktemp("no_torch")
    (folder / "sitecustomize.py").write_text(_BLOCKER)
    path = os.pathsep.join([str(folder), REPO, os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep)}
