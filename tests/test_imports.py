"""What importing bikestate costs: the light entry points load neither torch, detectron2 nor
OpenCV; collect_env reports a torch that fails to import; the lazy package exports are the
modules' own."""
import importlib
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "detectron2", "cv2")


def _python(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


@pytest.mark.parametrize("module", ["bikestate", "bikestate.constants", "bikestate.collect_env",
                                    "bikestate.data", "bikestate.data.coco",
                                    "bikestate.data.split", "bikestate.data.formats",
                                    "bikestate.verdict"])
def test_light_entry_points_load_no_heavy_library(module):
    out = _python(f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import {module} loads {out.stdout.strip()}"


def test_add_bikestate_config_registers_the_model_parts():
    out = _python(
        "from detectron2.config import get_cfg\n"
        "from detectron2.modeling import ROI_HEADS_REGISTRY, PROPOSAL_GENERATOR_REGISTRY\n"
        "from bikestate import add_bikestate_config\n"
        "assert 'StateROIHeads' not in ROI_HEADS_REGISTRY\n"
        "add_bikestate_config(get_cfg())\n"
        "print('StateROIHeads' in ROI_HEADS_REGISTRY, 'BatchedRPN' in PROPOSAL_GENERATOR_REGISTRY)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_collect_env_reports_a_torch_that_fails_to_import(tmp_path):
    broken = tmp_path / "torch"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise OSError('libtorch_cpu.so: cannot open shared object file')\n")
    out = subprocess.run([sys.executable, "-m", "bikestate.collect_env"], capture_output=True,
                         text=True, cwd=str(tmp_path), timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("PyTorch "))
    assert "import failed: OSError: libtorch_cpu.so: cannot open shared object file" in line
    assert "Python" in out.stdout and "detectron2" in out.stdout


def test_bikestate_data_exports_are_the_modules_own():
    import bikestate.data as data

    for module, names in data._EXPORTS.items():
        assert tuple(importlib.import_module(f"bikestate.data.{module}").__all__) == names, module
    assert data.register_bike_instances is importlib.import_module(
        "bikestate.data.catalog").register_bike_instances
    with pytest.raises(AttributeError):
        data.no_such_name
