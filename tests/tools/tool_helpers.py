"""Helpers of the tool tests: a real model's checkpoint and the options that give a tool data.

A plain module (not conftest), imported by the test files of this folder.
"""
import os
import subprocess
import sys

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from bikestate import add_bikestate_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")


def run_tool(tool, *args, env=None):
    """``tools/<tool> ARGS`` in a fresh process (as a user runs it), without tracebacks."""
    env = dict(os.environ, BIKESTATE_DEBUG="0", **(env or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def save_random_weights(path, seed=0):
    """Save the small CPU config's model, freshly built (random init, seeded), as a checkpoint
    at ``path`` (what a user passes as MODEL.WEIGHTS); returns ``path`` as a string."""
    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(seed)
    torch.save({"model": build_model(cfg).state_dict()}, str(path))
    return str(path)


def synth_data_opts(synth, output_dir):
    """Config options giving a tool the ``synth_small`` SynthBikes set as both its train and
    val data (DelftBikes format, converted into ``output_dir``)."""
    return ["BIKESTATE.DATA.TRAIN_JSON", synth["json"], "BIKESTATE.DATA.TRAIN_IMAGES",
            synth["images"], "BIKESTATE.DATA.VAL_JSON", synth["json"],
            "BIKESTATE.DATA.VAL_IMAGES", synth["images"], "OUTPUT_DIR", str(output_dir)]
