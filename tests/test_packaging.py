"""A non-editable install of bikestate has its configs, reachable by name (bikestate.model_zoo)."""
import os
import shutil
import subprocess
import sys

import pytest

from bikestate import model_zoo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_model_zoo_names_and_paths():
    names = model_zoo.list_configs()
    assert "bike_r50_fpn.yaml" in names and "bike_small_cpu.yaml" in names
    assert not any(n.startswith("Base-") for n in names)
    assert model_zoo.get_config_file("configs/bike_r50_fpn.yaml") == \
        model_zoo.get_config_file("bike_r50_fpn.yaml")
    with pytest.raises(RuntimeError, match="bike_r50_fpn.yaml"):
        model_zoo.get_config_file("bike_r51_fpn.yaml")
    # The repository's configs/ is the package's.
    assert os.path.samefile(os.path.join(REPO, "configs", "bike_r50_fpn.yaml"),
                            model_zoo.get_config_file("bike_r50_fpn.yaml"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """bikestate installed (not editable) from a copy of the tracked sources into a folder."""
    tmp = tmp_path_factory.mktemp("install")
    source, target = tmp / "src", tmp / "site"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = os.path.join(REPO, rel)
        if rel.startswith(("tests/", "benchmarks/", "docs/")) or not os.path.exists(src):
            continue
        dst = source / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=600)
    return target


def test_non_editable_install_ships_every_config(installed, tmp_path):
    code = (
        "import os, bikestate\n"
        "from bikestate import model_zoo\n"
        "for m in (bikestate, model_zoo):\n"
        f"    assert m.__file__.startswith({str(installed)!r}), m.__file__\n"
        "for name in model_zoo.list_configs():\n"
        "    cfg = model_zoo.get_config(name)\n"
        "    print(name, cfg.MODEL.ROI_HEADS.NAME, os.path.dirname(model_zoo.get_config_file(name)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(installed)))
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert {r[0] for r in rows} >= {"bike_r50_fpn.yaml", "bike_small_cpu.yaml", "bike_r101_fpn.yaml"}
    for name, heads, folder in rows:
        # The plain detector baseline has detectron2's ROI heads without a state branch.
        expected = "PlainDetectorROIHeads" if "plain_detector" in name else "StateROIHeads"
        assert heads.endswith(expected), name
        assert folder == str(installed / "bikestate" / "configs")
