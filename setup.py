#!/usr/bin/env python
"""bikestate: a detectron2 extension plugin for visual part verification of bicycles.

detectron2 itself is not on the Python package registry: `make setup` installs it (see
tools/install_detectron2.py) before this package. It is therefore not listed below.
"""
from setuptools import find_packages, setup

setup(
    name="bikestate",
    version="0.1.0",
    description="Bike part detection and state verification (intact, damaged, absent, occluded) "
    "as a detectron2 plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["bikestate", "bikestate.*"]),
    package_data={"bikestate": ["configs/*.yaml", "serving/static/*"]},
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "numpy",
        "pycocotools>=2.0.7",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        # The headless build: the GUI build needs libGL, which servers and CI machines lack.
        "opencv-python-headless",
        "pillow",
        "matplotlib",
        "tqdm",
        "tabulate",
        "python-dotenv",
        "wandb",
        "tensorboard",
    ],
    extras_require={
        # timm too, so the tests of the timm backbone run in CI instead of being skipped;
        # scikit-learn is the reference the verification metrics (AUROC, AP) are tested against;
        # hypothesis for the property-based tests (every image a user may have); playwright
        # drives the system's Chromium (make setup installs it) for the page tests; the
        # service's tests need its extra and httpx, their client; the export tests the export
        # extra; pytest-xdist runs `make test` in two processes.
        "dev": ["pytest>=7", "pytest-timeout", "pytest-xdist", "timm", "scikit-learn",
                "hypothesis>=6",
                "playwright", "fastapi", "uvicorn", "python-multipart>=0.0.13", "httpx",
                "onnx", "onnxruntime"],
        "timm": ["timm"],
        # Export to ONNX (tools/export_model.py) and its runtime (bikestate.deploy, which a
        # deployment can install alone: pip install onnxruntime numpy pillow).
        "export": ["onnx", "onnxruntime"],
        # The inspection service (tools/serve.py).
        "serve": ["fastapi", "uvicorn", "python-multipart>=0.0.13"],
    },
)
