"""Fixtures shared by the whole suite: small SynthBikes datasets, an offline W&B, Hypothesis
profiles."""
import os

import pytest
from hypothesis import HealthCheck, settings

# Real W&B, offline: runs are written to disk and read back by the tests, nothing is sent.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")
# Keep tests on the CPU threads they are given; detectron2 tests are CPU-bound.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """12 SynthBikes images at 320x240 in DelftBikes format: ``{"root", "json", "images"}``."""
    from bikestate.synth import generate_synthbikes

    root = tmp_path_factory.mktemp("synth_small")
    json_path = generate_synthbikes(str(root), num_images=12, seed=7, image_size=(320, 240),
                                    show_progress=False)
    return {"root": str(root), "json": json_path, "images": os.path.join(str(root), "images")}


# Property-based tests (Hypothesis): a few dozen examples per test in `make test`, thousands
# with `pytest --hypothesis-profile long` (BIKESTATE_HYPOTHESIS_EXAMPLES sets how many).
settings.register_profile("bikestate", max_examples=25, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", parent=settings.get_profile("bikestate"),
    max_examples=int(os.environ.get("BIKESTATE_HYPOTHESIS_EXAMPLES", "3000")))
settings.load_profile("bikestate")
