"""Fixtures shared by the whole suite: small SynthBikes datasets and an offline W&B."""
import os

import pytest

# Real W&B, offline: runs are written to disk and read back by the tests, nothing is sent.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")
# Keep tests on the CPU threads they are given; detectron2 tests are CPU-bound.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """12 SynthBikes images at 320x240 in DelftBikes format: ``{"root", "json", "images"}``."""
    from bikestate.data.synth import generate_synthbikes

    root = tmp_path_factory.mktemp("synth_small")
    json_path = generate_synthbikes(str(root), num_images=12, seed=7, image_size=(320, 240),
                                    show_progress=False)
    return {"root": str(root), "json": json_path, "images": os.path.join(str(root), "images")}
