#!/usr/bin/env python3
"""Install detectron2 into the running Python environment.

detectron2 is not published on the Python package registry. Two sources are supported:

``pypi-mirror`` (default)
    The registry distribution ``sal-detectron2==0.7.2`` is a repackaged 2024 detectron2 main
    snapshot. Its wheel is tagged for CPython 3.10 and carries a compiled ``detectron2/_C`` built
    for that Python only, plus a stray top-level ``tools`` package. This script downloads the wheel,
    checks its sha256, and repacks it as a pure-Python wheel named ``detectron2`` (version
    ``0.7.2+salmirror``) that:

    * drops ``detectron2/_C*.so`` (Faster R-CNN does not need it: torchvision provides ROIAlign and
      NMS, and COCOEvaluator falls back to pycocotools);
    * drops the top-level ``tools`` package (it would shadow other projects' ``tools``);
    * replaces the ``pkg_resources`` import of ``detectron2.model_zoo`` (recent setuptools no
      longer ships it) with a path relative to the module;
    * drops the ``numpy<2`` pin (the pure-Python sources work with numpy 2, which current
      opencv and pycocotools wheels need) and adds ``fvcore`` and ``iopath``, which the
      official detectron2 requires and without which ``import detectron2`` fails.

    The result is installed with pip, so ``pip show detectron2`` and ``pip uninstall detectron2``
    know it.

``git``
    Builds the official detectron2 from its GitHub repository with pip (compiling ``_C``, with
    CUDA when ``nvcc`` and a CUDA torch are present). Needs GitHub access.

Usage::

    python tools/install_detectron2.py [--source pypi-mirror|git] [--wheel PATH] [--force]
        [--dry-run]

Errors are reported as one line on stderr with a non-zero exit status.
"""
import argparse
import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

MIRROR_DISTRIBUTION = "sal-detectron2"
MIRROR_VERSION = "0.7.2"
MIRROR_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
# The local version label tells collect_env (and users) where the installed detectron2 came from.
REPACKED_VERSION = MIRROR_VERSION + "+salmirror"
GIT_URL = "git+https://github.com/facebookresearch/detectron2.git"
SOURCES = ("pypi-mirror", "git")

# Requirements of the mirror wheel that are dropped (see module docstring).
_DROPPED_REQUIREMENTS = re.compile(r"^Requires-Dist: (numpy<2|dataclasses)\b.*\n", re.M)

_MODEL_ZOO_PATCH = (
    (
        "import pkg_resources\n",
        "",
    ),
    (
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", '
        'os.path.join("configs", config_path)\n    )',
        "# bikestate repack: pkg_resources is gone from recent setuptools.\n"
        '    cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
    ),
)


class InstallError(Exception):
    """An installation problem, reported to the user as one line."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed_detectron2_version():
    try:
        return importlib.metadata.version("detectron2")
    except importlib.metadata.PackageNotFoundError:
        return None


def download_mirror_wheel(dest_dir):
    """Download the sal-detectron2 wheel (tagged cp310) without installing it."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.10", "--dest", dest_dir,
        f"{MIRROR_DISTRIBUTION}=={MIRROR_VERSION}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = [f for f in os.listdir(dest_dir) if f.endswith(".whl")]
    if result.returncode != 0 or len(wheels) != 1:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise InstallError(
            f"could not download {MIRROR_DISTRIBUTION}=={MIRROR_VERSION} from the package "
            f"registry: {last}"
        )
    return os.path.join(dest_dir, wheels[0])


def check_wheel_hash(path):
    actual = sha256_of(path)
    if actual != MIRROR_SHA256:
        raise InstallError(
            f"{path}: sha256 {actual} does not match the expected {MIRROR_SHA256} of "
            f"{MIRROR_DISTRIBUTION}=={MIRROR_VERSION}; refusing to install it"
        )


def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _patch_model_zoo(text):
    for old, new in _MODEL_ZOO_PATCH:
        if old not in text:
            raise InstallError("detectron2/model_zoo/model_zoo.py differs from the expected "
                               "sources; cannot patch its pkg_resources import")
        text = text.replace(old, new)
    return text


def _metadata(original):
    text = _DROPPED_REQUIREMENTS.sub("", original)
    # The official detectron2 requires these, and importing detectron2 fails without fvcore.
    text = text.replace("Requires-Dist: tensorboard\n", "Requires-Dist: tensorboard\n"
                        "Requires-Dist: fvcore<0.1.6,>=0.1.5\nRequires-Dist: iopath<0.1.11,>=0.1.7\n")
    text = re.sub(r"^Name: .*$", "Name: detectron2", text, count=1, flags=re.M)
    text = re.sub(r"^Version: .*$", f"Version: {REPACKED_VERSION}", text, count=1, flags=re.M)
    text = re.sub(
        r"^Summary: .*$",
        f"Summary: detectron2 pure-Python sources, repacked by bikestate from "
        f"{MIRROR_DISTRIBUTION}=={MIRROR_VERSION} (no _C, no top-level tools)",
        text, count=1, flags=re.M,
    )
    return text


def repack_mirror_wheel(src_wheel, out_dir):
    """Write a pure-Python ``detectron2`` wheel built from the mirror wheel; return its path."""
    dist_info = f"detectron2-{REPACKED_VERSION}.dist-info"
    out_path = os.path.join(out_dir, f"detectron2-{REPACKED_VERSION}-py3-none-any.whl")
    entries = []
    with zipfile.ZipFile(src_wheel) as src:
        old_dist_info = next(
            n.split("/")[0] for n in src.namelist() if n.split("/")[0].endswith(".dist-info")
        )
        for name in src.namelist():
            top = name.split("/")[0]
            base = os.path.basename(name)
            if top == "tools" or (name.startswith("detectron2/_C") and base.endswith(".so")):
                continue
            data = src.read(name)
            if top == old_dist_info:
                if base in ("RECORD", "top_level.txt", "WHEEL"):
                    continue
                if base == "METADATA":
                    data = _metadata(data.decode()).encode()
                name = f"{dist_info}/{base}"
            elif name == "detectron2/model_zoo/model_zoo.py":
                data = _patch_model_zoo(data.decode()).encode()
            entries.append((name, data))
    entries.append((f"{dist_info}/top_level.txt", b"detectron2\n"))
    entries.append((
        f"{dist_info}/WHEEL",
        b"Wheel-Version: 1.0\nGenerator: bikestate install_detectron2\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    ))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in entries:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    tmp_path = out_path + ".part"
    with zipfile.ZipFile(tmp_path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in entries:
            out.writestr(name, data)
    os.replace(tmp_path, out_path)
    return out_path


def _pip_install(args, dry_run):
    cmd = [sys.executable, "-m", "pip", "install", *args]
    print("+ " + " ".join(cmd), flush=True)
    if dry_run:
        return
    if subprocess.run(cmd).returncode != 0:
        raise InstallError("pip failed to install detectron2 (see pip's output above)")


def install(source, wheel=None, force=False, dry_run=False):
    if source not in SOURCES:
        raise InstallError(
            f"unknown detectron2 source {source!r}; choose one of: {', '.join(SOURCES)}"
        )
    current = installed_detectron2_version()
    wanted_mirror = source == "pypi-mirror"
    if current is not None and not force:
        if wanted_mirror == current.endswith("+salmirror"):
            print(f"detectron2 {current} already installed ({source}); nothing to do")
            return
    if source == "git":
        # Building _C needs torch at build time: no build isolation.
        _pip_install(["--no-build-isolation", GIT_URL], dry_run)
        return
    with tempfile.TemporaryDirectory(prefix="bikestate-d2-") as tmp:
        src = wheel if wheel else download_mirror_wheel(tmp)
        if not os.path.isfile(src):
            raise InstallError(f"{src}: wheel file not found")
        check_wheel_hash(src)
        repacked = repack_mirror_wheel(src, tmp)
        print(f"repacked {os.path.basename(src)} -> {os.path.basename(repacked)}")
        _pip_install(["--force-reinstall", "--no-deps", repacked] if current else [repacked],
                     dry_run)
        if current and not dry_run:
            # --no-deps above avoids reinstalling torch; make sure the dependencies are there.
            _pip_install([repacked], dry_run)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.environ.get("D2_SOURCE", "pypi-mirror"),
                        help="pypi-mirror (default) or git")
    parser.add_argument("--wheel", help="use this already downloaded sal-detectron2 wheel")
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    parser.add_argument("--dry-run", action="store_true",
                        help="repack but print the pip command instead of running it")
    args = parser.parse_args(argv)
    try:
        install(args.source, wheel=args.wheel, force=args.force, dry_run=args.dry_run)
    except InstallError as e:
        print(f"install_detectron2: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
