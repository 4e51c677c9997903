"""Issue 2: the environment really works: detectron2 trains and infers here, configs merge,
the installer checks what it installs and the Makefile rejects wrong usage."""
import glob
import importlib.metadata
import os
import subprocess
import sys
import zipfile

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import install_detectron2  # noqa: E402  (a script under tools/, imported for its functions)


def _random_instances(h, w, n, num_classes, generator):
    from detectron2.structures import Boxes, Instances

    xy = torch.rand(n, 2, generator=generator) * torch.tensor([w * 0.6, h * 0.6])
    wh = 16 + torch.rand(n, 2, generator=generator) * torch.tensor([w * 0.3, h * 0.3])
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
    inst.gt_classes = torch.randint(0, num_classes, (n,), generator=generator)
    return inst


def test_detectron2_faster_rcnn_trains_and_infers_on_cpu():
    """detectron2's own COCO-Detection/faster_rcnn_R_50_FPN_3x with 22 classes, random init."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 22
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 192, 256
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.roi_heads.box_predictor.cls_score.out_features == 23  # 22 parts + background

    g = torch.Generator().manual_seed(0)
    batch = [{"image": torch.randint(0, 256, (3, 192, 256), dtype=torch.uint8, generator=g),
              "instances": _random_instances(192, 256, 5, 22, g)} for _ in range(2)]
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    for name, value in losses.items():
        assert torch.isfinite(value), name
    sum(losses.values()).backward()
    grad = model.roi_heads.box_predictor.cls_score.weight.grad
    assert grad is not None and grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 384, "width": 512}])
    inst = out[0]["instances"]
    assert inst.image_size == (384, 512)  # boxes mapped back to the requested size
    assert {"pred_boxes", "scores", "pred_classes"} <= set(inst.get_fields())


def test_bikestate_config_merges_and_rejects_unknown_keys(tmp_path):
    from detectron2.config import get_cfg

    from bikestate import add_bikestate_config

    good = tmp_path / "good.yaml"
    good.write_text("MODEL:\n  ROI_STATE_HEAD:\n    LOSS_WEIGHT: 0.25\nSOLVER:\n"
                    "  OPTIMIZER: AdamW\n")
    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(str(good))
    assert cfg.MODEL.ROI_STATE_HEAD.LOSS_WEIGHT == 0.25
    assert cfg.MODEL.ROI_STATE_HEAD.NUM_STATES == 4
    assert cfg.SOLVER.OPTIMIZER == "AdamW"

    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  ROI_STATE_HEAD:\n    LOSS_WIEGHT: 0.25\n")
    cfg = add_bikestate_config(get_cfg())
    with pytest.raises(KeyError, match="Non-existent config key: MODEL.ROI_STATE_HEAD.LOSS_WIEGHT"):
        cfg.merge_from_file(str(bad))


def test_project_configs_merge():
    from detectron2.config import get_cfg

    from bikestate import add_bikestate_config

    configs = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
    assert configs, "configs/ holds no YAML file"
    for path in configs:
        cfg = add_bikestate_config(get_cfg())
        cfg.merge_from_file(path)
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 22, path


def test_installed_detectron2_is_the_repacked_pure_python_mirror():
    dist = importlib.metadata.distribution("detectron2")
    files = [str(f) for f in dist.files]
    assert dist.version == install_detectron2.REPACKED_VERSION
    assert not any(f.startswith("tools/") for f in files), "stray top-level tools installed"
    assert not any(f.startswith("detectron2/_C") for f in files), "_C for another Python"
    assert any(f == "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml" for f in files)
    from detectron2 import model_zoo  # imports without pkg_resources

    assert os.path.exists(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
    # pip knows the distribution, so `pip uninstall detectron2` would work.
    show = subprocess.run([sys.executable, "-m", "pip", "show", "detectron2"],
                          capture_output=True, text=True)
    assert show.returncode == 0 and "Version: 0.7.2+salmirror" in show.stdout


def test_installer_rejects_wheel_with_wrong_hash(tmp_path):
    fake = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("detectron2/__init__.py", "raise SystemExit('must never be installed')\n")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "install_detectron2.py"), "--force",
         "--wheel", str(fake)], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "sha256" in lines[0] and "does not match" in lines[0] and str(fake) in lines[0]
    assert "Successfully installed" not in result.stdout


def test_installer_rejects_unknown_source():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "install_detectron2.py"), "--source", "ftp"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown detectron2 source 'ftp'" in result.stderr


def test_repack_of_the_real_mirror_wheel(tmp_path):
    """Download sal-detectron2 from the registry, check its hash, repack, inspect the result."""
    src = install_detectron2.download_mirror_wheel(str(tmp_path))
    install_detectron2.check_wheel_hash(src)
    out = install_detectron2.repack_mirror_wheel(src, str(tmp_path))
    assert os.path.basename(out) == "detectron2-0.7.2+salmirror-py3-none-any.whl"
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        meta = z.read("detectron2-0.7.2+salmirror.dist-info/METADATA").decode()
        zoo = z.read("detectron2/model_zoo/model_zoo.py").decode()
        wheel = z.read("detectron2-0.7.2+salmirror.dist-info/WHEEL").decode()
    assert not [n for n in names if n.startswith("tools/") or n.startswith("detectron2/_C")]
    assert "Name: detectron2\n" in meta and "numpy<2" not in meta
    assert "Requires-Dist: fvcore" in meta and "Requires-Dist: yacs" in meta
    headers = meta.split("\n\n", 1)[0]
    assert "Requires-Dist: hydra-core" in headers  # no blank line cuts the header block short
    assert "import pkg_resources" not in zoo and "pkg_resources.resource_filename" not in zoo
    assert "Tag: py3-none-any" in wheel and "Root-Is-Purelib: true" in wheel


def test_git_source_builds_the_official_repository():
    """Only the command is checked here (no GitHub access): pip builds _C, torch visible."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "install_detectron2.py"), "--source", "git",
         "--force", "--dry-run"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--no-build-isolation git+https://github.com/facebookresearch/detectron2.git" in \
        result.stdout


def _make(*args):
    return subprocess.run(["make", "--no-print-directory", "-C", REPO, *args],
                          capture_output=True, text=True)


def test_make_rejects_unknown_d2_source():
    result = _make("setup", "D2_SOURCE=conda")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert "unknown D2_SOURCE 'conda'" in errors[0]


def test_make_setup_is_idempotent_on_a_ready_environment():
    """`make test` has just run setup: a second setup has nothing to do."""
    question = _make("-q", "setup")
    assert question.returncode == 0, "make setup would rebuild a ready environment"
    result = _make("setup")
    assert result.returncode == 0
    assert "pip" not in result.stdout


def test_collect_env_reports_detectron2_source():
    result = subprocess.run([sys.executable, "-m", "bikestate.collect_env"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "0.7.2+salmirror" in result.stdout
    assert "pypi-mirror" in result.stdout
    assert "detectron2._C" in result.stdout and "absent" in result.stdout
    assert "wandb" in result.stdout
