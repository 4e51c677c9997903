"""bench_state_boxes on a real (quick) training folder: the state head on annotated boxes gives
the evaluator's own state_gt figure, and every annotated part is classified on each kind of box."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from recipe_runs import ONE_THREAD, REPO, quick_recipe_run


@pytest.fixture(scope="module")
def conv_image_run(tmp_path_factory):
    """A quick run of the default recipe (12 iterations, 8 + 4 images) and its record."""
    records, run_dir, _ = quick_recipe_run(str(tmp_path_factory.mktemp("state_boxes")),
                                           "conv_image")
    return run_dir, records[0]


def run_bench(args, tmp_path):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_state_boxes.py"), *args,
         "--results-dir", str(tmp_path)], env=ONE_THREAD, capture_output=True, text=True,
        timeout=600)


def test_state_on_annotated_moved_and_detected_boxes(conv_image_run, tmp_path):
    run_dir, recipe_record = conv_image_run
    proc = run_bench(["--run", run_dir], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "state_boxes.jsonl") as f:
        fig = json.loads(f.readline())["figures"]
    with open(os.path.join(run_dir, "config.yaml")) as f:
        val_json = yaml.safe_load(f)["BIKESTATE"]["DATA"]["VAL_JSON"]
    with open(val_json) as f:
        num_parts = len(json.load(f)["annotations"])
    assert fig["num_images"] == 4
    assert fig["annotated"]["num_parts"] == fig["moved"]["num_parts"] == num_parts
    assert fig["detected"]["num_parts"] == num_parts - fig["parts_without_detection"]
    # The annotated boxes are what the evaluator's state_gt/* scored with the same weights.
    evaluated = recipe_record["figures"]["metrics"]["state_gt/auroc-absent"]
    assert fig["annotated"]["auroc_absent"] == pytest.approx(evaluated, abs=1e-6)
    for kind in ("annotated", "moved", "detected"):
        assert 0.0 <= fig[kind]["auroc_absent"] <= 1.0
        assert 0.0 <= fig[kind]["median_p_absent_of_absent"] <= 1.0
    assert 0.0 <= fig["detected"]["on_the_part_absent"] <= 1.0
    assert "detector's box on the part" in proc.stdout


def test_a_folder_without_a_model_is_one_line(tmp_path):
    proc = run_bench(["--run", str(tmp_path)], tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"bench_state_boxes.py: error: {tmp_path}: no model_best.pth or model_final.pth in this "
        "folder; give a training output folder or a weights file"]
    assert not (tmp_path / "state_boxes.jsonl").exists()
