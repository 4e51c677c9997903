"""Helpers of the deployment tests (a plain module, imported by the test files and the
fixtures of this folder)."""
import csv
import os
import subprocess
import sys

import numpy as np
from detectron2.config import get_cfg

from bikestate import add_bikestate_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
# The random R50 of the parity tests is settled, and detections are paired, as
# bench_export.py does.
from benchmarks.bench_export import (  # noqa: E402,F401
    pair_detections,
    settle_frozen_batchnorm,
    settling_pictures,
)

SMALL_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
R50_CONFIG = os.path.join(REPO, "configs", "bike_r50_fpn.yaml")
# The seeded random model scores its detections between about 0.054 and 0.068: above 0.058 a
# photo has a few dozen, and their number changes from photo to photo (what a graph that froze
# the tracing example's number would get wrong).
SCORE_THRESH = "0.058"
SMALL_OPTS = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192",
              "MODEL.ROI_HEADS.SCORE_THRESH_TEST", SCORE_THRESH]

# name -> upright (height, width): landscape, portrait, large (5x the test size), gray, an
# EXIF-rotated phone photo, a cut-out with transparency.
PHOTOS = {"landscape.jpg": (240, 320), "portrait.png": (320, 200), "large.jpg": (750, 1000),
          "gray.png": (240, 320), "phone.jpg": (320, 240), "cutout.png": (240, 320)}


def run_tool(tool, *args, env=None):
    """``tools/<tool> ARGS`` in a fresh process, as a user runs it."""
    env = dict(os.environ, BIKESTATE_DEBUG="0", **(env or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def make_cfg(config_file, opts):
    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def assert_same_detections(exported, eager, box_tol=0.5, prob_tol=1e-4):
    """Two :class:`Detections` of one photo agree: the same number, each detection of one with
    a detection of the other of the same part and state, box within ``box_tol`` pixels, score
    and state probabilities within ``prob_tol``.

    Detections are paired by part, box, score and state probabilities rather than by position:
    two of nearly equal score (a random model has many) may come in either order.
    """
    assert exported.image_size == eager.image_size
    assert len(exported) == len(eager)
    if not len(eager):
        return
    pairs = pair_detections(eager, exported, box_tol, prob_tol)
    assert pairs is not None, "detections do not pair one to one"
    exported = exported[pairs]
    np.testing.assert_array_equal(exported.classes, eager.classes)
    np.testing.assert_array_equal(exported.states, eager.states)
    np.testing.assert_allclose(exported.boxes, eager.boxes, rtol=0, atol=box_tol)
    np.testing.assert_allclose(exported.scores, eager.scores, rtol=0, atol=prob_tol)
    np.testing.assert_allclose(exported.state_scores, eager.state_scores, rtol=0, atol=prob_tol)


def assert_same_report(eager_csv, exported_csv, num_rows):
    """Two report.csv files of tools/predict.py: the same rows and verdicts, every number equal
    or one unit of its rounding apart (0.0001, boxes 0.01 px).

    One unit is what two runtimes' float32 sums (a few 1e-5 apart) give for a number that lies
    that close to a rounding boundary: it rounds to the neighbouring digit in one of them.

    Returns:
        (numbers, off_by_one): how many numbers were compared, how many differ by one unit.
    """
    rows = []
    for path in (eager_csv, exported_csv):
        with open(path, newline="") as f:
            rows.append(list(csv.DictReader(f)))
    assert len(rows[0]) == len(rows[1]) == num_rows
    numbers = off_by_one = 0
    for eager, exported in zip(*rows):
        assert eager.keys() == exported.keys()
        for column, value in eager.items():
            if column in ("file_name", "part", "verdict") or value == "":
                assert exported[column] == value, (column, eager, exported)
                continue
            unit = 0.01 if column.startswith("box_") else 1e-4
            difference = abs(float(exported[column]) - float(value))
            assert difference <= unit * 1.001, (column, eager, exported)
            numbers += 1
            off_by_one += difference > 0
    return numbers, off_by_one
