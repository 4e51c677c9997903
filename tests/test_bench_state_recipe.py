"""The state-recipe ablation runs ``tools/train_net.py`` end to end; the plain detector
baseline it compares against trains without the absent boxes and reports every detection
present, scored by the bikestate evaluator."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import bench_state_recipe, make_results  # noqa: E402
from recipe_runs import ONE_THREAD, quick_recipe_run  # noqa: E402


@pytest.fixture(scope="module")
def plain_detector_run(tmp_path_factory):
    """A quick plain-detector run of the ablation (12 iterations, 8 + 4 images)."""
    return quick_recipe_run(str(tmp_path_factory.mktemp("state_recipe")), "plain_detector")


def test_plain_detector_record(plain_detector_run):
    records, run_dir, stdout = plain_detector_run
    assert len(records) == 1
    fig = records[0]["figures"]
    assert fig["recipe"] == "plain_detector" and fig["seed"] == 7 and fig["quick"]
    assert fig["config"] == os.path.join("configs", "bike_small_cpu_plain_detector.yaml")
    # Counted from the trainer's log: 12 iterations of batch 2.
    assert fig["iterations"] == 12 and fig["images_seen"] == 24
    assert set(bench_state_recipe.KEPT) == set(fig["metrics"])
    assert {"present_recall", "hallucination_rate", "macro_f1"} <= set(fig["calibrated"])
    assert "plain_detector seed 7: AP50" in stdout


def test_plain_detector_trains_without_state_branch_and_reports_present(plain_detector_run):
    _, run_dir, _ = plain_detector_run
    with open(os.path.join(run_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    trained = [r for r in rows if "loss_cls" in r]
    assert trained and not any("loss_state" in r for r in trained)
    with open(os.path.join(run_dir, "inference",
                           "coco_instances_results_with_states.json")) as f:
        detections = json.load(f)
    # Every detection of the plain detector says "present" (intact) with certainty.
    for det in detections:
        assert det["state_name"] == "intact" and det["state_scores"] == [1.0, 0.0, 0.0, 0.0]


def test_rerun_with_resume_scores_the_finished_folder(plain_detector_run, tmp_path):
    records, run_dir, _ = plain_detector_run
    work = os.path.dirname(run_dir)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_state_recipe.py"), "--quick",
         "--recipes", "plain_detector", "--seeds", "7", "--results-dir", str(tmp_path),
         "--work-dir", work, "--cache-dir", os.path.join(os.path.dirname(work), "cache"),
         "--resume"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reusing the finished run" in proc.stdout
    with open(tmp_path / "state_recipe.jsonl") as f:
        again = json.loads(f.readline())["figures"]
    assert again["metrics"] == records[0]["figures"]["metrics"]
    assert again["wall_s"] is None  # nothing was trained


def test_recipes_spell_out_every_state_head_key():
    data = {"train": ("t.json", "t"), "val": ("v.json", "v")}
    for name, (config, changes, _) in bench_state_recipe.RECIPES.items():
        _, opts = bench_state_recipe.recipe_command(name, 1, 10, data, "out")
        keys = opts[::2]
        assert len(keys) == len(set(keys)), name
        spelled = dict(bench_state_recipe.DETECTOR)
        if config == bench_state_recipe.SMALL_CONFIG:
            spelled.update(bench_state_recipe.REFERENCE)
        assert {bench_state_recipe.config_key(k) for k in spelled} <= set(keys), name
        iters = "12" if bench_state_recipe.ITERATIONS_SCALE_KEY in changes else "10"
        for key in ("SOLVER.MAX_ITER", "TEST.EVAL_PERIOD"):
            assert opts[opts.index(key) + 1] == iters, (name, key)


def test_make_results_renders_the_ablation(plain_detector_run):
    records, _, _ = plain_detector_run
    text = make_results.render(records, include_smoke=True)
    assert "## State-branch recipes" in text
    assert "plain_detector" in text


def test_shipped_configs_use_the_default_recipe():
    """The configs' state branch is the recipe RESULTS.md holds to the targets."""
    from benchmarks.common import load_config

    _, changes, _ = bench_state_recipe.RECIPES[bench_state_recipe.DEFAULT_RECIPE]
    recipe = {**bench_state_recipe.DETECTOR, **bench_state_recipe.REFERENCE, **changes}
    # The training shares are the demo's data (real data has the shares it has).
    shares = recipe.pop(bench_state_recipe.TRAIN_SHARES_KEY, None)
    demo = subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    default = re.search(r"--train-state-probs TRAIN_STATE_PROBS.*?\(default:\s+([0-9.,]+);",
                        demo.stdout, re.S)
    assert default, demo.stdout
    assert [float(v) for v in default.group(1).split(",")] == (
        yaml.safe_load(shares) if shares else [0.6, 0.06, 0.2, 0.14])
    for name in ("Base-BikeState-RCNN-FPN.yaml", "bike_small_cpu.yaml", "bike_r50_fpn.yaml"):
        cfg = load_config(os.path.join(REPO, "configs", name))
        for key, value in recipe.items():
            node = cfg
            for part in bench_state_recipe.config_key(key).split("."):
                node = node[part]
            # The recipe's values are command-line text, parsed as YAML like a config file.
            expected = yaml.safe_load(value)
            assert list(node) == expected if isinstance(expected, list) \
                else node == expected, (name, key, node, value)


def test_step_cost_times_each_recipe_and_counts_its_state_rows(plain_detector_run, tmp_path):
    """``--step-cost``: one timed run per recipe and round, the ratio to the first recipe, and
    the rows the state head trains on: the reference head one per foreground proposal, the
    default (``TRAIN_ON both``) those and the annotated boxes."""
    _, run_dir, _ = plain_detector_run
    cache = os.path.join(os.path.dirname(os.path.dirname(run_dir)), "cache")
    default = bench_state_recipe.DEFAULT_RECIPE
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_state_recipe.py"), "--quick",
         "--step-cost", "--cost-iters", "5", "--cost-rounds", "1",
         "--recipes", "reference", default, "--seeds", "7", "--results-dir", str(tmp_path),
         "--work-dir", str(tmp_path / "work"), "--cache-dir", cache],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / "state_recipe_cost.jsonl") as f:
        (record,) = [json.loads(line) for line in f if line.strip()]
    fig = record["figures"]
    assert fig["quick"] and fig["weights_seed"] is None
    assert (fig["iterations"], fig["rounds"], fig["recipes"]) == (5, 1, ["reference", default])
    rows = {row["recipe"]: row for row in fig["rows"]}
    for row in rows.values():
        assert len(row["rounds_s"]) == 1 and row["s_per_step"] == row["rounds_s"][0] > 0
        assert row["fg_per_image"] > 0
    reference, chosen = rows["reference"], rows[default]
    assert reference["vs_first"] == 1.0
    assert chosen["vs_first"] == pytest.approx(chosen["s_per_step"] / reference["s_per_step"])
    assert reference["state_rows_per_image"] == pytest.approx(reference["fg_per_image"])
    assert chosen["state_rows_per_image"] > chosen["fg_per_image"]
    text = make_results.render([record], include_smoke=True)
    assert "seconds per training step" in text and f"`{default}`" in text


def test_step_cost_refuses_a_recipe_without_trained_weights(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_state_recipe.py"),
         "--step-cost", "--recipes", "reference", "--seeds", "7", "--results-dir",
         str(tmp_path), "--work-dir", str(tmp_path / "work"), "--cache-dir",
         str(tmp_path / "cache")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f"bench_state_recipe: error: {tmp_path / 'work' / 'reference_b1_s7' / 'model_final.pth'}"
        " is missing: train the recipe first (--recipes reference --seeds 7)")
    # Refused before any work: no data drawn, nothing recorded.
    assert not os.path.exists(tmp_path / "cache")
    assert not os.path.exists(tmp_path / "state_recipe_cost.jsonl")
