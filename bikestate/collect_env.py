"""Print the environment facts a user pastes into a bug report.

Run ``python -m bikestate.collect_env`` (or ``tools/collect_env.py``). It imports neither torch
nor detectron2 before it can report on them, so it also works, and says why, when they are
broken.
"""
import glob
import importlib.metadata
import importlib.util
import os
import platform
import sys

from tabulate import tabulate


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def detectron2_source(version):
    """Where the installed detectron2 came from: the repacked registry mirror or a git build."""
    if version is None:
        return "not installed"
    if version.endswith("+salmirror"):
        return "pypi-mirror (sal-detectron2 0.7.2, pure Python)"
    return "git / official build"


def wandb_mode():
    """The W&B mode a run would get with WANDB.MODE "auto" (see bikestate.engine)."""
    forced = os.environ.get("WANDB_MODE")
    if forced:
        return f"{forced} (WANDB_MODE)"
    if os.environ.get("WANDB_API_KEY"):
        return "online (WANDB_API_KEY set)"
    netrc = os.path.expanduser("~/.netrc")
    if os.path.exists(netrc) and "api.wandb.ai" in open(netrc, encoding="utf-8").read():
        return "online (credentials in ~/.netrc)"
    return "offline (no credentials)"


def collect_env_info():
    """Return a list of (name, value) rows."""
    rows = [("sys.platform", sys.platform), ("Python", sys.version.replace("\n", " ")),
            ("machine", platform.machine()), ("CPU count", os.cpu_count())]
    try:
        import torch

        rows.append(("PyTorch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"))
        rows.append(("PyTorch CUDA build", torch.version.cuda or "none"))
        cuda = torch.cuda.is_available()
        rows.append(("CUDA available", cuda))
        if cuda:
            for i in range(torch.cuda.device_count()):
                rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
    except ModuleNotFoundError as e:
        if e.name != "torch":
            rows.append(("PyTorch", f"import failed: {e}"))
        else:
            rows.append(("PyTorch", "not installed"))
    except Exception as e:  # noqa: BLE001  a broken torch is what this report is for
        rows.append(("PyTorch", f"import failed: {type(e).__name__}: {e}"))
    rows.append(("torchvision", _version("torchvision") or "not installed"))
    d2 = _version("detectron2")
    rows.append(("detectron2", d2 or "not installed"))
    rows.append(("detectron2 source", detectron2_source(d2)))
    if d2 is not None:
        spec = importlib.util.find_spec("detectron2")
        rows.append(("detectron2 path", os.path.dirname(spec.origin)))
        # Looked up as a file: find_spec of a submodule would import detectron2 (and torch).
        has_c = bool(glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*")))
        rows.append(("detectron2._C", "present" if has_c else
                     "absent (fine for Faster R-CNN: torchvision ops, pycocotools eval)"))
    for dist in ("bikestate", "pycocotools", "fvcore", "opencv-python-headless", "numpy",
                 "wandb", "timm"):
        rows.append((dist, _version(dist) or "not installed"))
    if _version("wandb"):
        rows.append(("wandb mode (auto)", wandb_mode()))
    return rows


def main():
    print(tabulate(collect_env_info(), tablefmt="simple"))


if __name__ == "__main__":
    main()
