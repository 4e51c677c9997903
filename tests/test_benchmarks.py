"""Benchmarks: every script runs end to end in a tiny setting and writes a valid record;
RESULTS.md is what make_results.py produces from the committed records.

No speed is asserted here (targets are checked by the benchmarks themselves, in RESULTS.md).
The scripts run as subprocesses on one CPU thread (faster than two on a shared machine).
"""
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks")
sys.path.insert(0, REPO)

from benchmarks import make_results  # noqa: E402


def _run(args, tmp_path, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, *args], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _single_record(results_dir, name):
    with open(os.path.join(results_dir, f"{name}.jsonl")) as f:
        lines = [line for line in f if line.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["benchmark"] == name
    assert {"date", "machine", "figures"} <= set(record)
    assert record["machine"]["torch"] == torch.__version__
    return record


def _finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bench_results"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bench_cache"))


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bench_profiles"))


@pytest.fixture(scope="module")
def speed_record(results_dir, cache_dir, profile_dir, tmp_path_factory):
    _run([os.path.join(BENCH, "bench_speed.py"), "--quick", "--threads", "1",
          "--overhead-configs", os.path.join(REPO, "configs", "bike_small_cpu.yaml"),
          "--loader-workers", "0", "--results-dir", results_dir, "--cache-dir", cache_dir,
          "--profile-dir", profile_dir],
         tmp_path_factory.mktemp("speed_cwd"))
    return _single_record(results_dir, "speed")


@pytest.fixture(scope="module")
def serve_record(results_dir, tmp_path_factory):
    _run([os.path.join(BENCH, "bench_serve.py"), "--quick", "--results-dir", results_dir,
          "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192"],
         tmp_path_factory.mktemp("serve_cwd"))
    return _single_record(results_dir, "serve")


def test_serve_record(serve_record):
    fig = serve_record["figures"]
    assert fig["quick"] and fig["clients"] == 2 and fig["config_name"] == "bike_small_cpu.yaml"
    assert fig["answered_200"] > 0 and fig["errors"] == 0 and fig["rejected_503"] == 0
    assert fig["requests"] == sum(fig["statuses"].values())
    assert 0 < fig["latency_p50_ms"] <= fig["latency_p95_ms"] <= fig["latency_p99_ms"]
    assert 0 < fig["inference_p50_ms"] < fig["latency_p95_ms"]
    assert _finite_number(fig["throughput_per_s"]) and fig["throughput_per_s"] > 0
    assert fig["rss_before_mib"] > 0 and _finite_number(fig["rss_growth_pct"])


@pytest.fixture(scope="module")
def assignment_record(results_dir, tmp_path_factory):
    _run([os.path.join(BENCH, "bench_assignment.py"), "--quick", "--threads", "1",
          "--results-dir", results_dir], tmp_path_factory.mktemp("assignment_cwd"))
    return _single_record(results_dir, "assignment")


@pytest.fixture(scope="module")
def roi_align_record(results_dir, tmp_path_factory):
    _run([os.path.join(BENCH, "bench_roi_align.py"), "--quick", "--results-dir", results_dir],
         tmp_path_factory.mktemp("roi_align_cwd"))
    return _single_record(results_dir, "roi_align")


@pytest.fixture(scope="module")
def accuracy_record(results_dir, cache_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("accuracy_work")
    _run([os.path.join(BENCH, "bench_accuracy.py"), "--setting", "tiny", "--threads", "1",
          "--results-dir", results_dir, "--cache-dir", cache_dir, "--work-dir", str(work)],
         tmp_path_factory.mktemp("accuracy_cwd"))
    return _single_record(results_dir, "accuracy")


def test_speed_record(speed_record):
    fig = speed_record["figures"]
    assert fig["quick"] is True and fig["device"] == "cpu"
    (overhead,) = fig["overhead"]
    assert overhead["config"] == "bike_small_cpu"
    for key in ("train_step_state_s", "train_step_plain_s", "infer_batch_state_s",
                "infer_batch_plain_s"):
        assert _finite_number(overhead[key]) and overhead[key] > 0, key
    assert overhead["train_overhead_pct"] == pytest.approx(
        100 * (overhead["train_step_state_s"] / overhead["train_step_plain_s"] - 1))
    # The figures follow from the recorded runs: 3 training rounds (3x --repeats 1), 4x as
    # many inference rounds.
    runs = overhead["runs_s"]
    for kind, rounds in (("train", 3), ("infer", 12)):
        state, plain = runs[f"{kind}_state"], runs[f"{kind}_plain"]
        assert len(state) == len(plain) == rounds
        step = "train_step" if kind == "train" else "infer_batch"
        assert overhead[f"{step}_state_s"] == pytest.approx(statistics.median(state))
        assert overhead[f"{step}_plain_s"] == pytest.approx(statistics.median(plain))
        assert overhead[f"{kind}_overhead_pct_paired"] == pytest.approx(
            100 * statistics.median(a / b - 1 for a, b in zip(state, plain)))
    (row,) = fig["vs_seed"]
    assert (row["batch"], row["precision"]) == (2, "fp32")
    assert fig["memory_measure"] == "cpu_process_peak_rss"
    for who in ("bikestate", "seed"):
        for key in ("train_img_s", "train_step_ms", "infer_ms_per_img", "train_peak_mem_mib",
                    "infer_peak_mem_mib"):
            assert _finite_number(row[f"{who}_{key}"]) and row[f"{who}_{key}"] > 0, key
        assert row[f"{who}_train_img_s"] == pytest.approx(2000 / row[f"{who}_train_step_ms"])
        # A whole process: torch alone is over 100 MiB; training adds gradients and AdamW's
        # two moments (three times the ~160 MiB of R50-FPN weights) to what inference needs.
        assert row[f"{who}_infer_peak_mem_mib"] > 100
        assert row[f"{who}_train_peak_mem_mib"] > row[f"{who}_infer_peak_mem_mib"] + 300
    assert row["train_speedup"] == pytest.approx(row["bikestate_train_img_s"]
                                                 / row["seed_train_img_s"])
    # The batched target assignment is one more model of the run (training only: inference is
    # the same code); GPU busy time and host syncs are CUDA figures, null on CPU.
    for key in ("train_img_s", "train_step_ms", "train_peak_mem_mib"):
        assert _finite_number(row[f"bikestate_batched_{key}"]), key
    assert row["bikestate_batched_train_peak_mem_mib"] > 100
    assert "bikestate_batched_infer_ms_per_img" not in row
    assert row["batched_train_speedup"] == pytest.approx(row["bikestate_batched_train_img_s"]
                                                         / row["seed_train_img_s"])
    assert row["batched_vs_per_image"] == pytest.approx(row["bikestate_batched_train_img_s"]
                                                        / row["bikestate_train_img_s"])
    for who in ("bikestate", "bikestate_batched", "seed"):
        assert row[f"{who}_train_gpu_busy_ms"] is None
        assert row[f"{who}_train_syncs_per_step"] is None
    (loader,) = fig["loader"]
    assert loader["workers"] == 0 and loader["images"] > 0 and loader["img_s"] > 0


def test_assignment_record(assignment_record):
    fig = assignment_record["figures"]
    assert fig["quick"] is True and fig["device"] == "cpu" and fig["images"] == 2
    assert (fig["gt_per_image"], fig["levels"], fig["anchors_per_level"]) == (22, 5, 2028)
    assert [r["stage"] for r in fig["rows"]] == ["rpn", "roi_heads"]
    for r in fig["rows"]:
        for who in ("per_image", "batched"):
            assert _finite_number(r[f"{who}_ms"]) and r[f"{who}_ms"] > 0
            assert len(r[f"{who}_runs_ms"]) == 2  # --quick: 2 repeats
            assert r[f"{who}_ms"] == pytest.approx(statistics.median(r[f"{who}_runs_ms"]))
            assert r[f"{who}_syncs"] is None  # a CUDA figure
        assert r["speedup"] == pytest.approx(r["per_image_ms"] / r["batched_ms"])


def test_roi_align_record(roi_align_record):
    """Both backwards timed alone and inside the small config's training step; the gradients
    they give agree."""
    fig = roi_align_record["figures"]
    assert fig["quick"] is True and fig["config"] == "bike_small_cpu.yaml"
    assert [r["stage"] for r in fig["rows"]] == ["backward", "train_step"]
    for r in fig["rows"]:
        for who in ("torchvision", "matmul"):
            assert len(r[f"{who}_runs_ms"]) == 2  # --quick: 2 repeats
            assert r[f"{who}_ms"] == pytest.approx(statistics.median(r[f"{who}_runs_ms"]))
            assert r[f"{who}_ms"] > 0
        assert r["speedup"] == pytest.approx(r["torchvision_ms"] / r["matmul_ms"])
        assert r["speedup_paired"] == pytest.approx(statistics.median(
            a / b for a, b in zip(r["torchvision_runs_ms"], r["matmul_runs_ms"])))
    # The box head pools every FPN level it reads, with the gradient of a training step.
    assert len(fig["pooled"]) == 3 and sum(c["rois"] for c in fig["pooled"]) > 0
    assert 0 <= fig["max_grad_diff"] <= 1e-5 * max(fig["max_grad"], 1.0) and fig["max_grad"] > 0


def test_speed_profiles(speed_record, profile_dir):
    """--profile-dir: one profiled training step per part-2 model, batch size and precision."""
    assert sorted(os.listdir(profile_dir)) == ["train_bikestate_b2_fp32.txt",
                                               "train_bikestate_batched_b2_fp32.txt",
                                               "train_seed_b2_fp32.txt"]
    for name in os.listdir(profile_dir):
        with open(os.path.join(profile_dir, name), encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert lines[0].startswith("step wall time (profiled): ")
        assert float(lines[0].split(": ")[1].split()[0]) > 0
        # The operator table: convolutions run in the backbone of both models.
        assert any("Self CPU" in line for line in lines)
        assert any("convolution" in line for line in lines), name


def test_speed_models_compared_at_the_same_weights():
    """bench_speed's A/B premise: after take_over the plain model holds the state model's
    weights and optimizer state, so both detect the same boxes; restore undoes a step."""
    from benchmarks import bench_speed

    torch.manual_seed(0)
    samples = bench_speed.synthetic_samples(2, (96, 128))
    config = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
    keep_all = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]  # 100 detections per image
    state = bench_speed.D2Runner(bench_speed.load_cfg(config, "cpu", (96, 128), keep_all), 0)
    plain = bench_speed.D2Runner(bench_speed.load_cfg(
        config, "cpu", (96, 128), keep_all + ["MODEL.ROI_HEADS.NAME", "StandardROIHeads"]), 1)
    batch = state.inputs(samples)
    state.settle(batch, 2)
    bench_speed.take_over(plain, state)
    state_params = dict(state.model.named_parameters())
    moved = 0
    for name, p in plain.model.named_parameters():
        assert torch.equal(p, state_params[name]), name
        moments = state.optimizer.state.get(state_params[name], {})
        assert set(plain.optimizer.state.get(p, {})) == set(moments), name
        for key, value in moments.items():
            assert torch.equal(plain.optimizer.state[p][key], value), (name, key)
        moved += bool(moments)
    assert moved > 10
    (a,), (b,) = state.infer(batch[:1]), plain.infer(batch[:1])
    assert len(a["instances"]) > 0
    assert torch.equal(a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor)

    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    state.train_step(batch)
    assert any(not torch.equal(v, state.model.state_dict()[k]) for k, v in before.items())
    state.restore()
    for k, v in before.items():
        assert torch.equal(v, state.model.state_dict()[k]), k


def test_accuracy_record(accuracy_record):
    fig = accuracy_record["figures"]
    assert fig["setting"] == "tiny"
    assert set(fig["models"]) == {"bikestate_small", "bikestate_r50", "seed_r50"}
    # The default recipe: GroupNorm on both sides, bikestate with its augmentations.
    assert fig["seed_norm"] == "gn" and fig["seed_weights"] is None and fig["augment"] is True
    assert fig["images_planned"] == fig["epochs"] * fig["train_images"]
    for name, m in fig["models"].items():
        # Same budget for every model: the images its training loop counted are the plan.
        assert m["images_seen"] == m["images_planned"] == fig["images_seen"] \
            == fig["images_planned"], name
        assert m["norm_layers"] == ["GroupNorm"], name
        assert m["warmup_iters"] == (0 if name == "seed_r50" else 1), name  # 5 % of 2, at least 1
        assert m["augmentation"] == ([] if name == "seed_r50" else [
            "RandomFlip", "RandomBrightness", "RandomContrast", "RandomSaturationWithFormat"])
        assert _finite_number(m["wall_s"]) and m["wall_s"] > 0
        for key in ("bbox/AP", "bbox/AP50", "bbox_present/AP"):
            assert _finite_number(m[key]) and 0 <= m[key] <= 100, (name, key)
        for key in ("state/macro_f1", "verify/hallucination_rate", "verify/damage_precision"):
            # null where undefined (a barely trained model may match no part)
            assert m[key] is None or (_finite_number(m[key]) and 0 <= m[key] <= 1), (name, key)
        # Threshold-free verification figures: always defined on SynthBikes val.
        for key in ("verify/auroc_present", "verify/halluc_at_95r", "verify/damage_ap",
                    "verify/macro_f1", "verify/present_recall"):
            assert _finite_number(m[key]) and 0 <= m[key] <= 1, (name, key)
        # The state head alone, on every ground-truth box: always defined.
        for key in ("state_gt/accuracy", "state_gt/macro_f1"):
            assert _finite_number(m[key]) and 0 <= m[key] <= 1, (name, key)
        shares = m["state_gt_predicted_shares"]
        assert set(shares) == {"intact", "damaged", "absent", "occluded"}
        assert sum(shares.values()) == pytest.approx(1.0)
        assert set(m["state_gt_auc"]) == set(shares)
        for state, auc in m["state_gt_auc"].items():
            # null only for a state the validation boxes lack (or all have)
            assert auc is None or 0 <= auc <= 1, (name, state)


def test_seed_model_norms():
    """build_seed_model's normalisation from scratch: GroupNorm in ResNet and FPN, no BatchNorm
    (the accuracy benchmark's default), trainable or frozen BatchNorm in the ResNet only."""
    from torchvision.ops import FrozenBatchNorm2d

    from benchmarks import seed_baseline as S

    def norms(model):
        return {type(m) for m in model.base_model.backbone.modules()
                if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm,
                                  FrozenBatchNorm2d))}

    gn = S.build_seed_model(num_parts=2, min_size=48, max_size=64, norm="gn")
    assert norms(gn) == {torch.nn.GroupNorm}
    assert any(isinstance(m, torch.nn.GroupNorm) for m in gn.base_model.backbone.fpn.modules())
    assert all(m.num_groups == 32 for m in gn.modules() if isinstance(m, torch.nn.GroupNorm))
    for norm, expected in ((None, torch.nn.BatchNorm2d), ("bn", torch.nn.BatchNorm2d),
                           ("frozen_bn", FrozenBatchNorm2d)):
        model = S.build_seed_model(num_parts=2, min_size=48, max_size=64, norm=norm)
        assert norms(model) == {expected}, norm
    with pytest.raises(ValueError, match="norm must be"):
        S.build_seed_model(norm="GN")
    with pytest.raises(ValueError, match="needs weights=None"):
        S.build_seed_model(norm="gn", weights="DEFAULT")


def test_one_vs_rest_auc():
    """The AUC that tells a ranking head from a majority-only one (ties count half)."""
    import numpy as np
    from benchmarks.bench_accuracy import _one_vs_rest_auc

    positive = np.array([True, True, False, False])
    assert _one_vs_rest_auc(np.array([0.9, 0.8, 0.1, 0.2]), positive) == 1.0
    assert _one_vs_rest_auc(np.array([0.1, 0.2, 0.9, 0.8]), positive) == 0.0
    assert _one_vs_rest_auc(np.full(4, 0.5), positive) == 0.5
    assert _one_vs_rest_auc(np.array([0.9, 0.1, 0.5, 0.5]), positive) == 0.5
    assert _one_vs_rest_auc(np.array([0.3, 0.4]), np.array([True, True])) is None


def test_make_results_keeps_the_latest_record_per_machine_and_scope(speed_record):
    """A later run of fewer parts or batch sizes on the same machine does not hide the latest
    full run; a later run of the same scope does."""
    full, later_full, batch8 = (json.loads(json.dumps(speed_record)) for _ in range(3))
    full["date"] = "2026-01-01T00:00:00+00:00"
    later_full["date"] = "2026-01-02T00:00:00+00:00"
    batch8["date"] = "2026-01-03T00:00:00+00:00"
    batch8["figures"]["batch_sizes"] = [8]
    del batch8["figures"]["overhead"]
    for r in (full, later_full, batch8):
        r["figures"]["quick"] = False
    latest = make_results.latest_per_machine([full, later_full, batch8])
    assert [r["date"] for r in latest] == [batch8["date"], later_full["date"]]
    assert make_results.scope(batch8) == "parts vs_seed, loader; batch 8"
    text = make_results.render([full, later_full, batch8])
    assert f"{later_full['date']} (parts overhead, vs_seed, loader; batch 2)" in text


def test_make_results_keeps_accuracy_recipes_apart(accuracy_record):
    """Accuracy runs with another seed normalisation or without bikestate's augmentation do not
    hide each other; the recipes are rendered, and counts that differ are said."""
    gn, bn, plain = (json.loads(json.dumps(accuracy_record)) for _ in range(3))
    for day, r in enumerate((gn, bn, plain), 1):
        r["date"] = f"2026-01-0{day}T00:00:00+00:00"
        r["figures"]["setting"] = "cpu"
    bn["figures"]["seed_norm"] = "bn"
    plain["figures"]["augment"] = False
    n = gn["figures"]["images_seen"]
    assert make_results.scope(gn) == (f"setting cpu, {n} images seen, seed norm gn, "
                                      "bikestate augmentation on")
    assert make_results.scope(plain).endswith("seed norm gn, bikestate augmentation off")
    assert len(make_results.latest_per_machine([gn, bn, plain])) == 3
    text = make_results.render_accuracy(plain)
    assert "**Recipes**" in text and "flip and colour jitter off" in text
    assert f"{n} images seen by every model (counted by the training loops)" in text
    assert "| seed_r50 | GroupNorm | none | 0 |" in text
    plain["figures"]["images_seen"] = None
    plain["figures"]["models"]["seed_r50"]["images_seen"] -= 2
    assert "counts differ" in make_results.scope(plain)
    assert "counts differ" in make_results.render_accuracy(plain)


def test_make_results_renders_the_records(speed_record, accuracy_record, assignment_record,
                                          serve_record, roi_align_record, results_dir, tmp_path):
    records_dir = tmp_path / "results"
    shutil.copytree(os.path.join(BENCH, "results"), records_dir)
    for name in ("speed", "accuracy", "assignment", "serve", "roi_align"):
        shutil.copy(os.path.join(results_dir, f"{name}.jsonl"), records_dir / f"{name}.jsonl")
    out = tmp_path / "RESULTS.md"
    args = ["--results-dir", str(records_dir), "--output", str(out), "--readme", ""]

    # Smoke records are listed but not shown as results ...
    assert make_results.main(args) == 0
    text = out.read_text()
    assert "Only smoke-test records so far." in text
    for record in (speed_record, accuracy_record, assignment_record, serve_record,
                   roi_align_record):
        assert record["date"] in text
    assert make_results.main(args + ["--check"]) == 0
    out.write_text(text + "edited by hand\n")
    assert make_results.main(args + ["--check"]) == 1

    # ... and rendered with --include-smoke: tables and target verdicts.
    assert make_results.main(args + ["--include-smoke"]) == 0
    text = out.read_text()
    assert "| bike_small_cpu |" in text
    assert "| 2 | fp32 |" in text
    assert "| 2 | fp32 | bikestate_batched |" in text  # the training step per model
    assert "| rpn |" in text and "| roi_heads |" in text
    assert "| backward |" in text and "| train_step |" in text  # ROIAlign's CPU backward
    assert "| bikestate_r50 |" in text and "| seed_r50 |" in text
    assert "**State head alone**" in text
    assert "| latency p50 / p95 / p99, ms |" in text  # the service under load
    assert "State branch overhead, bike_small_cpu, training step <= 3%" in text
    assert ">= seed_r50 on every metric" in text
    for record in make_results.load_records(str(records_dir)):
        assert record["date"] in text


def test_demo_record_regenerates_the_readme_table(tmp_path):
    """The README's demo table comes from the demo's own record, between two markers."""
    records_dir = tmp_path / "results"
    records_dir.mkdir()
    record = {"benchmark": "demo", "date": "2026-11-30T15:00:00",
              "machine": {"device": "cpu", "device_name": "x86_64", "cpu_count": 2},
              "figures": {"config": "configs/bike_small_cpu.yaml", "opts": [],
                          "train_images": 400, "val_images": 60, "image_size": "640x480",
                          "train_state_probs": [0.5, 0.16, 0.2, 0.14], "total_min": 13.5,
                          "metrics": {"bbox/AP50": 77.25, "verify/halluc_at_95r": 0.125,
                                      "verify/present_recall": 0.9,
                                      "verify/hallucination_rate": 0.2},
                          "calibrated": {"present_recall": 0.95, "hallucination_rate": 0.3,
                                         "macro_f1": None}}}
    (records_dir / "demo.jsonl").write_text(json.dumps(record) + "\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{make_results.README_BEGIN}\nold table\n"
                      f"{make_results.README_END}\nrest\n")
    args = ["--results-dir", str(records_dir), "--output", str(tmp_path / "RESULTS.md"),
            "--readme", str(readme)]
    assert make_results.main(args + ["--check"]) == 1
    assert make_results.main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old table" not in text
    assert "| present recall / hallucination | 0.9 / 0.2 |" in text
    assert "| hallucination at 95 % / 90 % present recall | 0.125 / n/a |" in text
    assert "| calibrated on val: verdict macro-F1 | n/a |" in text
    assert "on CPU x86_64, 2 cores, 2026-11-30T15:00:00" in text
    assert "training parts intact / damaged / absent / occluded 0.5 / 0.16 / 0.2 / 0.14" in text
    assert make_results.main(args + ["--check"]) == 0


def test_committed_results_md_is_generated():
    """RESULTS.md is never hand-edited: it equals make_results' output for the committed
    records (after appending a record, run ``python benchmarks/make_results.py``)."""
    expected = make_results.render(make_results.load_records(os.path.join(BENCH, "results")))
    with open(os.path.join(BENCH, "RESULTS.md"), encoding="utf-8") as f:
        assert f.read() == expected, "benchmarks/RESULTS.md is stale: run benchmarks/make_results.py"
    with open(make_results.DEFAULT_README, encoding="utf-8") as f:
        readme = f.read()
    assert make_results.update_readme(readme, make_results.readme_demo_block(
        make_results.load_records(os.path.join(BENCH, "results")))) == readme, \
        "README.md's demo table is stale: run benchmarks/make_results.py"


def test_seed_dataset_and_instances(tmp_path):
    """The seed's dataset converts xywh boxes and keeps ids and states; its predictions become
    Instances with 0-based classes and state scores that sum to 1."""
    from PIL import Image

    from benchmarks import seed_baseline as S

    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "a.jpg")
    Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / "b.jpg")
    coco = {"images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
                       {"id": 9, "file_name": "b.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "bell"}, {"id": 2, "name": "saddle"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [4, 5, 10, 20],
                             "area": 200, "iscrowd": 0, "state": 3}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    ds = S.BikePartsDataset(str(tmp_path / "coco.json"), str(tmp_path))
    image, target = ds[0]
    assert image.shape == (3, 48, 64) and 0 <= float(image.min()) <= float(image.max()) <= 1
    assert target["boxes"].tolist() == [[4.0, 5.0, 14.0, 25.0]]
    assert target["labels"].tolist() == [2] and target["states"].tolist() == [3]
    assert int(target["image_id"]) == 7
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["states"].numel() == 0
    images, targets = S.collate_fn([ds[0], ds[1]])
    assert len(images) == len(targets) == 2

    torch.manual_seed(0)
    model = S.build_seed_model(num_parts=2, min_size=48, max_size=64)
    # Training: detection + 0.5 x state; a batch without annotated parts has a zero state loss.
    total, losses = model(list(images), list(targets))
    assert float(total) == pytest.approx(
        sum(float(losses[k]) for k in S.DETECTION_LOSSES) + 0.5 * float(losses["loss_state"]))
    total, losses = model([images[1]], [targets[1]])
    assert float(losses["loss_state"]) == 0 and math.isfinite(float(total))
    model.eval()
    (pred,) = model.predict([image])
    n = len(pred["boxes"])
    assert pred["state_scores"].shape == (n, 4) and pred["states"].shape == (n,)
    # Force a known prediction through the conversion.
    pred = {"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "labels": torch.tensor([2]),
            "scores": torch.tensor([0.9]), "states": torch.tensor([1]),
            "state_scores": torch.tensor([[0.1, 0.6, 0.2, 0.1]])}
    inst = S.to_instances(pred, (48, 64), {1: 0, 2: 1})
    assert inst.image_size == (48, 64)
    assert inst.pred_classes.tolist() == [1] and inst.pred_states.tolist() == [1]
    assert float(inst.state_scores.sum()) == pytest.approx(1.0)


def test_synth_benchmark_times_both_styles(results_dir, tmp_path):
    _run([os.path.join(BENCH, "bench_synth.py"), "--quick", "--results-dir", results_dir],
         tmp_path)
    record = _single_record(results_dir, "synth")
    fig = record["figures"]
    assert fig["quick"] is True and [r["style"] for r in fig["styles"]] == ["v1", "v2"]
    for row in fig["styles"]:
        for key in ("render_jpeg_img_per_s", "render_jpeg_img_per_cpu_s", "generate_img_per_s",
                    "generate_img_per_cpu_s"):
            assert _finite_number(row[key]) and row[key] > 0
    v1, v2 = fig["styles"]
    assert fig["v2_over_v1_cpu_time"] == pytest.approx(
        v1["render_jpeg_img_per_cpu_s"] / v2["render_jpeg_img_per_cpu_s"], rel=0.01)
    text = make_results.render([record], include_smoke=True)
    assert "| v2 |" in text and "v2 within 2x the CPU time of v1 per image" in text


def test_export_benchmark_rounds_and_paired_speedups(results_dir, tmp_path):
    """Every runtime runs once a round; ms/image is the median of the rounds, the speed-up the
    median of each round's ratio to PyTorch eager, and the exports give eager's detections."""
    _run([os.path.join(BENCH, "bench_export.py"), "--quick", "--configs", "small", "--threads",
          "1", "--rounds", "2", "--results-dir", results_dir], tmp_path, timeout=600)
    record = _single_record(results_dir, "export")
    fig = record["figures"]
    assert fig["quick"] is True and fig["rounds"] == 2 and fig["weights"] == {"small": "random"}
    rows = {row["runtime"]: row for row in fig["rows"]}
    assert set(rows) == {"pytorch", "torchscript", "onnxruntime"}
    eager = rows["pytorch"]["ms_per_image_rounds"]
    for runtime, row in rows.items():
        assert len(row["ms_per_image_rounds"]) == 2
        assert all(_finite_number(v) and v > 0 for v in row["ms_per_image_rounds"])
        assert row["ms_per_image"] == pytest.approx(statistics.median(row["ms_per_image_rounds"]))
        assert row["speedup_vs_eager"] == pytest.approx(statistics.median(
            e / r for e, r in zip(eager, row["ms_per_image_rounds"])))
        assert row["photos_with_other_detections"] == 0 and row["max_box_diff_px"] <= 0.5
        assert row["max_prob_diff"] <= 1e-4
        assert (runtime == "pytorch") == ("export_mib" not in row)
    text = make_results.render([record], include_smoke=True)
    assert "median of 2 rounds" in text and "small seeded random init" in text
    assert "Target: onnxruntime at least" in text
