"""Regenerate ``benchmarks/RESULTS.md`` from the JSON records in ``benchmarks/results/*.jsonl``.

RESULTS.md is never edited by hand: every figure in it comes from a record appended by a
benchmark script (:func:`benchmarks.common.append_record`), and the output depends on the
records only (no clock, no machine state), so ``--check`` can tell whether the committed file is
up to date.

Per benchmark, the latest record of each machine and scope (parts and batch sizes of a speed run,
setting, budget, seed normalisation and bikestate augmentation of an accuracy run, config
options) comes first, with the machine and the date, rendered as tables; targets of the speed,
accuracy and SynthBikes benchmarks are checked (met, or missed by how much). Smoke-test records
(``quick`` runs, ``tiny`` settings) are left out.
Benchmarks without a dedicated renderer (``eval``, ``state_branch``, ...) get a generic one:
scalars in a two-column table, lists of dicts as tables. All records are listed at the end.

    python benchmarks/make_results.py            # write benchmarks/RESULTS.md
    python benchmarks/make_results.py --check    # exit 1 if RESULTS.md is out of date
"""
import argparse
import glob
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RESULTS_DIR = os.path.join(HERE, "results")
DEFAULT_OUTPUT = os.path.join(HERE, "RESULTS.md")
DEFAULT_README = os.path.join(os.path.dirname(HERE), "README.md")

# Targets of issue 8.
OVERHEAD_TRAIN_MAX_PCT = 3.0
OVERHEAD_INFER_MAX_PCT = 2.0
GPU_AMP_B8_MIN_SPEEDUP = 1.3
# Judged against the seed: detection, then the verdicts by threshold-free figures (a rate at
# one threshold is never judged alone: finding nothing never hallucinates).
ACCURACY_HIGHER = ("bbox/AP", "bbox/AP50", "bbox_present/AP", "verify/auroc_present",
                   "verify/damage_ap", "verify/macro_f1")
ACCURACY_LOWER = ("verify/halluc_at_95r",)
# Column order of the accuracy table (other metrics of a record follow); each operating-point
# rate stands beside its counterpart.
ACCURACY_COLUMNS = ACCURACY_HIGHER + ACCURACY_LOWER + (
    "verify/present_recall", "verify/hallucination_rate", "verify/damage_precision",
    "verify/damage_recall", "verify/macro_f1_majority", "bbox_state/AP50")
# onnxruntime vs PyTorch eager, small config, both cores.
EXPORT_MIN_SPEEDUP = 1.5
ORDER = ("demo", "state_recipe", "state_recipe_cost", "state_boxes", "speed", "assignment",
         "roi_align", "export", "accuracy", "serve", "state_branch", "eval", "synth", "imports")
TITLES = {
    "demo": "`make demo`: the demo model on SynthBikes val",
    "state_recipe": "State-branch recipes at the demo's budget (ablation, SynthBikes v2 val)",
    "state_recipe_cost": "State-branch recipes: seconds per training step",
    "state_boxes": "The state head on annotated, moved and detected boxes (SynthBikes v2 val)",
    "speed": "Speed: state branch overhead, bikestate vs the seed pipeline, data loading",
    "assignment": "Training-target assignment alone: detectron2's per-image loops vs batched",
    "roi_align": "ROIAlign's CPU backward: torchvision's per-element loop vs matrix products",
    "export": "Exported models: PyTorch eager vs TorchScript vs onnxruntime (CPU inference)",
    "accuracy": "Accuracy at equal training budget: bikestate vs the seed pipeline",
    "serve": "Inspection service under load (tools/serve.py, clients on loopback)",
    "state_branch": "State branch overhead (modeling benchmark)",
    "eval": "Evaluator speed",
    "synth": "SynthBikes generation speed",
    "imports": "Start-up cost of the entry points (import time beyond the interpreter's)",
}


# ------------------------------------------------------------------------------ records


def load_records(results_dir):
    """Every record of every ``*.jsonl`` file, sorted by (benchmark, date)."""
    records = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{number}: not a JSON record: {e}")
                record.setdefault("benchmark", os.path.splitext(os.path.basename(path))[0])
                records.append(record)
    records.sort(key=lambda r: (r["benchmark"], r.get("date", "")))
    return records


def is_smoke(record):
    fig = record.get("figures", {})
    return bool(fig.get("quick")) or fig.get("setting") == "tiny"


def machine_label(record):
    m = record.get("machine", {})
    if m.get("device") == "cuda":
        return f"{m.get('device_name', '?')} (CUDA {m.get('cuda', '?')})"
    return f"CPU {m.get('device_name', '?')}, {m.get('cpu_count', '?')} cores"


def machine_details(record):
    m = record.get("machine", {})
    parts = [f"host `{m.get('hostname', '?')}`", m.get("platform", ""),
             f"Python {m.get('python', '?')}", f"torch {m.get('torch', '?')}"]
    if m.get("detectron2"):
        parts.append(f"detectron2 {m['detectron2']}")
    return ", ".join(p for p in parts if p)


def options_text(opts):
    """Config options as typed on a command line (an empty value shows as ``""``)."""
    return " ".join(str(o) if str(o) else '""' for o in opts)


def scope(record):
    """What a record measured, beyond its machine: a run of some parts or batch sizes only, of
    another accuracy setting, budget or recipe (the seed's normalisation, bikestate's
    augmentation), or with config options (an ablation) does not hide the latest default run on
    the same machine."""
    fig = record.get("figures", {})
    options = f"; options {options_text(fig['opts'])}" if fig.get("opts") else ""
    if record.get("benchmark") == "serve":
        return (f"{fig.get('clients')} clients, {fig.get('threads')} threads"
                f"{', with pictures' if fig.get('image') else ''}; model {fig.get('model')}"
                f"{options}")
    if record.get("benchmark") == "state_recipe_cost":
        return f"recipes {', '.join(fig.get('recipes', []))}"
    if record.get("benchmark") == "export":
        configs = sorted({row["config"] for row in fig.get("rows", [])})
        return f"configs {', '.join(configs)}{options}"
    if "setting" in fig:
        return f"setting {fig['setting']}, {_accuracy_budget(fig)}{_accuracy_recipe(fig)}{options}"
    parts = [p for p in ("overhead", "vs_seed", "loader") if fig.get(p)]
    if not parts:
        return ""
    return f"parts {', '.join(parts)}; batch {fmt(fig.get('batch_sizes'))}{options}"


def _accuracy_budget(fig):
    if fig.get("images_seen") is None and "images_planned" in fig:
        return f"{fig['images_planned']} images planned, counts differ"
    return f"{fig.get('images_seen')} images seen"


def _accuracy_recipe(fig):
    """The seed's normalisation and bikestate's augmentation of an accuracy record ("" for
    records from before they were recorded)."""
    parts = []
    if "seed_norm" in fig:
        parts.append(f"seed norm {fig['seed_norm']}" if fig["seed_norm"]
                     else f"seed weights {fig.get('seed_weights')}")
    if "augment" in fig:
        parts.append(f"bikestate augmentation {'on' if fig['augment'] else 'off'}")
    return "".join(f", {p}" for p in parts)


def latest_per_machine(records, include_smoke=False):
    """The newest (non-smoke) record per machine label and :func:`scope`, newest first."""
    latest = {}
    for r in records:
        if is_smoke(r) and not include_smoke:
            continue
        key = (machine_label(r), scope(r))
        if key not in latest or r.get("date", "") >= latest[key].get("date", ""):
            latest[key] = r
    return sorted(latest.values(), key=lambda r: r.get("date", ""), reverse=True)


# ------------------------------------------------------------------------------ formatting


def fmt(v):
    """Compact, stable number formatting."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        a = abs(v)
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        if a == 0:
            return "0"
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "x".join(fmt(x) for x in v) if all(isinstance(x, (int, float)) for x in v) \
            else ", ".join(fmt(x) for x in v)
    return str(v).replace("|", "\\|")


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |"
            for row in rows]
    return "\n".join(out)


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def generic_figures(figures):
    """Scalars (flattened) as a two-column table; each list of dicts as its own table."""
    scalars, lists = [], []
    for k, v in sorted(flatten(figures).items()):
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            lists.append((k, v))
        else:
            scalars.append([k, fmt(v)])
    parts = []
    if scalars:
        parts.append(table(["figure", "value"], scalars))
    for name, rows in lists:
        headers = []
        for row in rows:
            for key in flatten(row):
                if key not in headers:
                    headers.append(key)
        parts.append(f"`{name}`:\n\n" + table(
            headers, [[fmt(flatten(row).get(h)) for h in headers] for row in rows]))
    return "\n\n".join(parts)


def verdict(ok, how):
    return f"**met** ({how})" if ok else f"**missed** ({how})"


# ------------------------------------------------------------------------------ speed


# bench_speed's part-2 models, as named in its records.
SPEED_MODELS = ("bikestate", "bikestate_batched", "seed")


# bench_speed's "memory_measure" -> how the tables name it (older records: RSS growth).
MEMORY_MEASURES = {
    "cuda_max_memory_allocated": "CUDA max_memory_allocated, MiB",
    "cpu_process_peak_rss": "peak resident set of a process running only that model, MiB",
    "cpu_peak_rss_growth": "growth of peak RSS over one step, MiB (approximate)",
}


def render_speed(record):
    fig = record["figures"]
    cuda = fig.get("device", "cpu").startswith("cuda")
    lines = [f"Input {fmt(fig.get('image_size'))} (HxW), median of {fig.get('repeats')} "
             f"alternating runs after {fig.get('warmup')} warm-up, {fig.get('threads')} CPU "
             f"threads, 1-min load average at start {fmt(fig.get('load_average_1min'))}. "
             f"Seed baseline: {fig.get('seed_setup', 'torchvision')}. bikestate: "
             f"`{fig.get('bikestate_config', '?')}` with `MODEL.WEIGHTS \"\"`"
             + (f" {options_text(fig['opts'])}" if fig.get("opts") else "") + "."
             + (f" Every model first trains {fig['settle_steps']} steps on the batch; its "
                "weights and optimizer state are restored before every timed run (a step's "
                "cost changes as the RPN learns)." if "settle_steps" in fig else "")
             + (f" State branch overhead: {len(fig['overhead'][0]['runs_s']['train_state'])} "
                f"training and {len(fig['overhead'][0]['runs_s']['infer_state'])} inference "
                "rounds, 100 detections per image."
                if fig.get("overhead") and "runs_s" in fig["overhead"][0] else "")]
    targets = []
    if fig.get("overhead"):
        rows = []
        for r in fig["overhead"]:
            paired = {k: (f"{r[k]:+.2f}" if k in r else "n/a")
                      for k in ("train_overhead_pct_paired", "infer_overhead_pct_paired")}
            rows.append([r["config"], 1000 * r["train_step_plain_s"],
                         1000 * r["train_step_state_s"], f"{r['train_overhead_pct']:+.2f}",
                         paired["train_overhead_pct_paired"],
                         1000 * r["infer_batch_plain_s"], 1000 * r["infer_batch_state_s"],
                         f"{r['infer_overhead_pct']:+.2f}", paired["infer_overhead_pct_paired"]])
            if not cuda:
                for kind, limit in (("train", OVERHEAD_TRAIN_MAX_PCT),
                                    ("infer", OVERHEAD_INFER_MAX_PCT)):
                    pct = r[f"{kind}_overhead_pct"]
                    targets.append(
                        f"State branch overhead, {r['config']}, "
                        f"{'training step' if kind == 'train' else 'inference'} <= {limit:g}%: "
                        + verdict(pct <= limit, f"{pct:+.2f}%" + (
                            "" if pct <= limit else f", {pct - limit:.2f} points over")))
        lines.append("**State branch overhead** (batch 2; StateROIHeads vs the same config with "
                     "StandardROIHeads at the same weights; +% from the medians, paired: "
                     "median of per-round ratios; targets judged on the medians):\n\n" + table(
                         ["config", "train plain ms", "train state ms", "train +%",
                          "train +% (paired)", "infer plain ms", "infer state ms", "infer +%",
                          "infer +% (paired)"], rows))
    if fig.get("vs_seed"):
        mem = MEMORY_MEASURES.get(fig.get("memory_measure"), MEMORY_MEASURES["cpu_peak_rss_growth"])
        rows = [[r["batch"], r["precision"], r["bikestate_train_img_s"], r["seed_train_img_s"],
                 f"{r['train_speedup']:.2f}x", r["bikestate_infer_ms_per_img"],
                 r["seed_infer_ms_per_img"], f"{r['infer_speedup']:.2f}x",
                 r["bikestate_train_peak_mem_mib"], r["seed_train_peak_mem_mib"],
                 r["bikestate_infer_peak_mem_mib"], r["seed_infer_peak_mem_mib"]]
                for r in fig["vs_seed"]]
        lines.append(f"**bikestate R50-FPN vs seed baseline** (peak memory: {mem}):\n\n" + table(
            ["batch", "precision", "bikestate train img/s", "seed train img/s", "train speed-up",
             "bikestate infer ms/img", "seed infer ms/img", "infer speed-up",
             "bikestate train mem", "seed train mem", "bikestate infer mem", "seed infer mem"],
            rows))
        batched = "bikestate_batched_train_img_s" in fig["vs_seed"][0]
        if batched:
            lines.append(
                "**Training step per model** (bikestate: detectron2's per-image training-target "
                "assignment; bikestate_batched: `BatchedRPN` + `BatchedStateROIHeads`; GPU busy: "
                "kernel and copy time of one profiled step; host syncs: what "
                "`torch.cuda.set_sync_debug_mode` reports in one step; both CUDA only):\n\n"
                + table(["batch", "precision", "model", "step ms", "img/s", "GPU busy ms",
                         "GPU busy % of step", "host syncs per step", "x seed"],
                        [[r["batch"], r["precision"], who, r[f"{who}_train_step_ms"],
                          r[f"{who}_train_img_s"], r[f"{who}_train_gpu_busy_ms"],
                          _busy_pct(r, who), r[f"{who}_train_syncs_per_step"],
                          f"{r[f'{who}_train_img_s'] / r['seed_train_img_s']:.2f}x"]
                         for r in fig["vs_seed"] for who in SPEED_MODELS]))
        amp8 = [r for r in fig["vs_seed"] if r["precision"] == "amp" and r["batch"] == 8]
        for key, what in (("train_speedup", ""),
                          ("batched_train_speedup", " (batched target assignment)")):
            if amp8 and key in amp8[0]:
                s = amp8[0][key]
                targets.append(
                    f"GPU AMP batch 8 training >= {GPU_AMP_B8_MIN_SPEEDUP}x seed images/s{what}: "
                    + verdict(s >= GPU_AMP_B8_MIN_SPEEDUP, f"{s:.2f}x" + (
                        "" if s >= GPU_AMP_B8_MIN_SPEEDUP
                        else f", {100 * (1 - s / GPU_AMP_B8_MIN_SPEEDUP):.0f}% short")))
        if not amp8 and not cuda:
            targets.append(f"GPU AMP batch 8 training >= {GPU_AMP_B8_MIN_SPEEDUP}x seed "
                           "images/s: not measured on this machine (CPU, no AMP)")
    if fig.get("loader"):
        rows = [[r["workers"], r["img_s"], fmt(r.get("source_size"))] for r in fig["loader"]]
        lines.append("**Training data loader** (BikeStateTrainer.build_train_loader, "
                     "BikeStateDatasetMapper on SynthBikes JPEGs):\n\n"
                     + table(["workers", "images/s", "JPEG size (WxH)"], rows))
        amp8 = [r for r in fig.get("vs_seed", []) if r["precision"] == "amp" and r["batch"] == 8]
        if amp8:
            need = amp8[0]["bikestate_train_img_s"]
            have = max(r["img_s"] for r in fig["loader"])
            targets.append(f"Data loader keeps up with AMP batch 8 training ({need:.1f} img/s): "
                           + verdict(have >= need, f"{have:.1f} img/s"))
    if targets:
        lines.append("Targets:\n\n" + "\n".join(f"- {t}" for t in targets))
    return "\n\n".join(lines)


def _busy_pct(row, who):
    busy = row.get(f"{who}_train_gpu_busy_ms")
    return None if busy is None else 100 * busy / row[f"{who}_train_step_ms"]


# ------------------------------------------------------------------------------ assignment


def render_assignment(record):
    fig = record["figures"]
    lines = [f"{fig.get('images')} images x {fig.get('gt_per_image')} ground-truth boxes "
             f"({fmt(fig.get('image_size'))}); RPN: {fig.get('anchors_per_level')} anchors x "
             f"{fig.get('levels')} levels per image; ROI heads: {fig.get('proposals_per_image')} "
             f"proposals per image + the ground truth. Median of {fig.get('repeats')} "
             f"alternating runs after {fig.get('warmup')} warm-up, {fig.get('threads')} CPU "
             f"threads, 1-min load average at start {fmt(fig.get('load_average_1min'))}; "
             "host syncs: what `torch.cuda.set_sync_debug_mode` reports in one call (CUDA "
             "only).",
             table(["stage", "per-image ms (detectron2)", "batched ms (bikestate)", "speed-up",
                    "per-image host syncs", "batched host syncs"],
                   [[r["stage"], r["per_image_ms"], r["batched_ms"], f"{r['speedup']:.2f}x",
                     r.get("per_image_syncs"), r.get("batched_syncs")] for r in fig["rows"]])]
    return "\n\n".join(lines)


def render_state_recipe_cost(record):
    fig = record["figures"]
    rows = fig["rows"]
    lines = [f"`tools/train_net.py` with each recipe's command, {fig.get('iterations')} "
             f"iterations from the final weights of its seed-{fig.get('weights_seed')} run "
             f"(the demo's data, {fig.get('train_images')} pictures at "
             f"{fig.get('image_size')}), no warm-up, no evaluation; {fig.get('rounds')} rounds "
             "alternating the recipes. Seconds per step: the median of the trainer's "
             "20-iteration windows after the first, per round; the ratio: the median of the "
             f"per-round ratios to `{rows[0]['recipe']}`. 1-min load average at the end "
             f"{fmt(fig.get('load_average_1min'))}.",
             table(["recipe", "s per step", "rounds", f"x `{rows[0]['recipe']}`",
                    "foreground proposals per image", "state-head rows per image"],
                   [[f"`{r['recipe']}`", f"{r['s_per_step']:.3f}",
                     " / ".join(f"{s:.3f}" for s in r["rounds_s"]), f"{r['vs_first']:.2f}x",
                     f"{r['fg_per_image']:.1f}", f"{r['state_rows_per_image']:.1f}"]
                    for r in rows])]
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ roi_align


def render_roi_align(record):
    fig = record["figures"]
    pooled = ", ".join(f"{c['rois']} ROIs on {fmt(c['level_shape'])}" for c in fig["pooled"])
    lines = [f"`configs/{fig.get('config')}` at {fmt(fig.get('image_size'))} (HxW), "
             f"{fig.get('images')} SynthBikes v2 pictures, weights settled by "
             f"{fig.get('settle_steps')} training steps; pooled with gradients in one step: "
             f"{pooled}. `backward`: the ROIAlign backward alone on those captured inputs; "
             "`train_step`: the whole training step with either backward "
             "(`MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD`), weights and optimizer restored and the "
             f"same proposals before each run. Median of {fig.get('repeats')} alternating runs "
             f"after {fig.get('warmup')} warm-up, {fig.get('threads')} CPU threads, 1-min load "
             f"average at start {fmt(fig.get('load_average_1min'))}; paired: median of the "
             "per-round ratios. Largest difference between the two gradients of the feature "
             f"maps: {fig['max_grad_diff']:.1e} (largest gradient {fig['max_grad']:.1f}).",
             table(["stage", "torchvision ms", "matmul ms (bikestate)", "speed-up",
                    "paired speed-up"],
                   [[r["stage"], r["torchvision_ms"], r["matmul_ms"], f"{r['speedup']:.2f}x",
                     f"{r['speedup_paired']:.2f}x"] for r in fig["rows"]])]
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ export


def render_export(record):
    fig = record["figures"]
    rows = fig["rows"]
    options = f"; options {options_text(fig['opts'])}" if fig.get("opts") else ""
    random_init = ("seeded random init"
                   + (f" ({fig['random_init']})" if fig.get("random_init") else ""))
    lines = [f"{fig.get('images')} SynthBikes photos of {fmt(fig.get('image_size'))} (WxH), "
             f"each config at its own test size{options}; "
             f"ms per image: median of {fig.get('repeats')} passes after one warm-up pass, the "
             "whole predictor call (resize, graph, boxes back to original pixels)"
             + (f"; median of {fig['rounds']} rounds in which the runtimes take turns, speed-up "
                "the median of the rounds' paired ratios" if fig.get("rounds", 1) > 1 else "")
             + ". Each runtime in its own process; peak RSS of that process (the onnxruntime "
             "one without torch and detectron2). Differences: against PyTorch eager at the same "
             "threads. Weights: "
             + (", ".join(f"{name} {random_init if w == 'random' else f'`{w}`'}"
                          for name, w in fig["weights"].items()) if fig.get("weights")
                else "not recorded")
             + f". 1-min load average at start {fmt(fig.get('load_average_1min'))}.",
             table(["config", "runtime", "threads", "ms/image", "each round", "vs eager",
                    "peak RSS MiB", "export MiB", "photos with other detections",
                    "max box diff px", "max score/prob diff"],
                   [[r["config"], r["runtime"], r["threads"], r["ms_per_image"],
                     " / ".join(f"{v:.0f}" for v in r.get("ms_per_image_rounds", [])) or "n/a",
                     f"{r['speedup_vs_eager']:.2f}x", r["peak_rss_mib"], r.get("export_mib"),
                     r["photos_with_other_detections"], r["max_box_diff_px"],
                     r["max_prob_diff"]] for r in rows])]
    goal = [r for r in rows if r["config"] == "small" and r["runtime"] == "onnxruntime"]
    for r in sorted(goal, key=lambda r: r["threads"]):
        same = r["photos_with_other_detections"] == 0 and r["max_box_diff_px"] <= 0.5 \
            and r["max_prob_diff"] <= 1e-4
        lines.append(
            f"Target: onnxruntime at least {EXPORT_MIN_SPEEDUP}x faster than PyTorch eager on "
            f"the small config with the same outputs, {r['threads']} thread(s): "
            + verdict(r["speedup_vs_eager"] >= EXPORT_MIN_SPEEDUP and same,
                      f"{r['speedup_vs_eager']:.2f}x, "
                      + ("same outputs" if same else "outputs differ")))
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ serve


def render_serve(record):
    fig = record["figures"]
    size = fig.get("image_size") or ["?", "?"]
    lines = [f"`benchmarks/bench_serve.py`: {fig.get('clients')} clients posting "
             f"{size[0]}x{size[1]} SynthBikes photos to `POST /v1/inspect`"
             f"{'?image=1' if fig.get('image') else ''} back to back for "
             f"{fig.get('duration_s')} s after {fig.get('warmup')} warm-up requests; server: "
             f"`{fig.get('config_name')}` (test size {fig.get('min_size_test')}-"
             f"{fig.get('max_size_test')}), {fig.get('threads')} torch threads, queue of "
             f"{fig.get('queue_size')}; 1-min load average at start "
             f"{fmt(fig.get('load_average_1min'))}. Latency as the clients see it (upload, "
             "queue, inference, answer), of the answered requests.",
             table(["figure", "value"], [
                 ["requests: answered / queue full (503) / errors",
                  f"{fig.get('answered_200')} / {fig.get('rejected_503')} / "
                  f"{fig.get('errors')}"],
                 ["throughput, photos/s", fmt(fig.get("throughput_per_s"))],
                 ["latency p50 / p95 / p99, ms", " / ".join(
                     fmt(fig.get(k)) for k in ("latency_p50_ms", "latency_p95_ms",
                                               "latency_p99_ms"))],
                 ["server inference time p50, ms", fmt(fig.get("inference_p50_ms"))],
                 ["server RSS after warm-up / at the end, MiB",
                  f"{fmt(fig.get('rss_before_mib'))} / {fmt(fig.get('rss_after_mib'))} "
                  f"({fmt(fig.get('rss_growth_pct'))} %)"],
             ])]
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ accuracy


# bikestate.constants.STATE_NAMES; records store dicts with sorted keys.
STATE_ORDER = ("intact", "damaged", "absent", "occluded")


def render_accuracy(record):
    fig = record["figures"]
    models = fig.get("models", {})
    metric_keys = [k for k in ACCURACY_COLUMNS if any(k in m for m in models.values())]
    for m in models.values():
        for k in m:
            if "/" in k and k not in metric_keys:
                metric_keys.append(k)
    if "images_planned" not in fig:  # records from before images were counted
        budget = f"{fig.get('images_seen')} images seen by every model"
    elif fig.get("images_seen") is not None:
        budget = (f"{fig['images_seen']} images seen by every model (counted by the training "
                  "loops)")
    else:
        budget = (f"{fig['images_planned']} images planned, but the models' counts differ "
                  "(see the recipes)")
    lines = [f"Setting `{fig.get('setting')}` on {fig.get('device')}: SynthBikes "
             f"{fig.get('train_images')} training / {fig.get('val_images')} validation images "
             f"at {fmt(fig.get('image_size'))} (WxH), {fig.get('epochs')} epoch(s) = "
             f"{budget}, batch 2, all from scratch. "
             "AP in percent, rates in [0, 1]; wall time includes the evaluations."
             + (f" bikestate config options: `{options_text(fig['opts'])}`."
                if fig.get("opts") else "")
             + (f" {fig['note']}" if fig.get("note") else "")]
    rows = [[name] + [m.get(k) for k in metric_keys] + [m.get("wall_s"), m.get("iterations")]
            for name, m in models.items()]
    lines.append(table(["model"] + metric_keys + ["wall s", "iterations"], rows))
    if any("norm_layers" in m for m in models.values()):
        lines.append(
            "**Recipes**: normalisation layers of the backbone (ResNet + FPN) as built; random "
            "training augmentation (a resize to one size is not counted; bikestate's flip and "
            f"colour jitter {'on' if fig.get('augment') else 'off'}); learning-rate warm-up; "
            "training images counted by the loops:\n\n"
            + table(["model", "norm layers", "random augmentation", "warm-up iterations",
                     "images seen", "images planned"],
                    [[name, ", ".join(m.get("norm_layers", [])) or "none",
                      ", ".join(m.get("augmentation", [])) or "none", m.get("warmup_iters"),
                      m.get("images_seen"), m.get("images_planned")]
                     for name, m in models.items()]))
    if models and not any("verify/auroc_present" in m for m in models.values()):
        lines.append("This record predates the evaluator's verdict rule: its `verify/*` rates "
                     "count a part not found as a correct absent and only verdicts at IoU >= 0.5 "
                     "with the ground truth, so they are not comparable with later records "
                     "(and the hallucination rate is shown without its present recall).")
    probed = {name: m for name, m in models.items() if m.get("state_gt_auc")}
    if probed:
        found = next(iter(probed.values()))["state_gt_auc"]
        states = [s for s in STATE_ORDER if s in found] + sorted(set(found) - set(STATE_ORDER))
        rows = [[name] + [f"{fmt(m.get('state_gt_predicted_shares', {}).get(s))} / "
                          f"{fmt(m['state_gt_auc'].get(s))}" for s in states]
                for name, m in probed.items()]
        lines.append("**State head alone** on every ground-truth box of the validation set "
                     "(final weights): share of boxes given each state / one-vs-rest AUC of "
                     "that state's probability (0.5: no ranking):\n\n"
                     + table(["model"] + states, rows))
    seed = models.get("seed_r50")
    if seed:
        targets = []
        for name, m in models.items():
            if name == "seed_r50":
                continue
            misses, na = [], []
            for key in ACCURACY_HIGHER + ACCURACY_LOWER:
                a, b = m.get(key), seed.get(key)
                if a is None or b is None:
                    na.append(key)
                    continue
                if key in ACCURACY_HIGHER and a < b:
                    misses.append(f"{key} {fmt(a)} vs {fmt(b)} ({a - b:+.3g})")
                elif key in ACCURACY_LOWER and a >= b:
                    misses.append(f"{key} {fmt(a)} vs {fmt(b)} (not lower)")
            how = ("all metrics at least the seed's, lower hallucination at 95 % present recall"
                   if not misses else "; ".join(misses))
            if na:
                how += "; undefined: " + ", ".join(na)
            targets.append(f"{name} >= seed_r50 on every metric and lower hallucination at 95 % "
                           "present recall: "
                           + verdict(not misses and not na, how))
        lines.append("Targets:\n\n" + "\n".join(f"- {t}" for t in targets))
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ demo

# Rows of the demo table: (label, metric, counterpart shown beside it or None).
DEMO_ROWS = (
    ("`bbox/AP50` / `bbox/AP`", "bbox/AP50", "bbox/AP"),
    ("`bbox_present/AP` (public protocol)", "bbox_present/AP", None),
    ("present vs absent AUROC", "verify/auroc_present", None),
    ("hallucination at 95 % / 90 % present recall", "verify/halluc_at_95r",
     "verify/halluc_at_90r"),
    ("damage AP", "verify/damage_ap", None),
    ("present recall / hallucination", "verify/present_recall", "verify/hallucination_rate"),
    ("not found (present parts)", "verify/not_found_rate", None),
    ("damage precision / recall", "verify/damage_precision", "verify/damage_recall"),
    ("verdict macro-F1 / majority baseline", "verify/macro_f1", "verify/macro_f1_majority"),
    ("state head on ground-truth boxes: macro-F1", "state_gt/macro_f1", None),
)
# The calibrated operating point's figures on val (chosen there: optimistic).
DEMO_CALIBRATED_ROWS = (
    ("P(present) rule / AUROC present", "presence", "auroc_present"),
    ("present recall / hallucination", "present_recall", "hallucination_rate"),
    ("damage precision / recall", "damage_precision", "damage_recall"),
    ("verdict macro-F1", "macro_f1", None),
)
README_BEGIN = "<!-- demo-table: generated by benchmarks/make_results.py -->"
README_END = "<!-- end of demo-table -->"


def _pair(values, key, other):
    return fmt(values.get(key)) + ("" if other is None else f" / {fmt(values.get(other))}")


def synth_label(fig):
    """"SynthBikes v2, generator version 2": records from before versions were recorded drew on
    version 1."""
    return (f"SynthBikes {fig.get('synth_style', 'v1')} (generator version "
            f"{fig.get('synth_version', 1)})")


def shares_text(fig):
    """How the training split's state shares differ from DelftBikes' ("" when they do not)."""
    shares = fig.get("train_state_probs")
    if not shares:
        return ""
    return (" (training parts intact / damaged / absent / occluded "
            f"{' / '.join(f'{p:g}' for p in shares)}; val has DelftBikes' shares)")


def render_demo(record):
    fig = record["figures"]
    metrics, calibrated = fig.get("metrics", {}), fig.get("calibrated", {})
    lines = [f"`{fig.get('config')}`{' ' + options_text(fig['opts']) if fig.get('opts') else ''}"
             f", trained from scratch on {fig.get('train_images')} {synth_label(fig)} images at "
             f"{fig.get('image_size')}{shares_text(fig)}, scored on {fig.get('val_images')} "
             "validation images; "
             f"whole demo {fmt(fig.get('total_min'))} min. AP in percent, the rest in [0, 1]; "
             "rates at the default operating point (argmax state, score >= 0.5) unless marked "
             "calibrated.",
             table(["SynthBikes val", "value"],
                   [[label, _pair(metrics, key, other)] for label, key, other in DEMO_ROWS]
                   + [[f"calibrated on val: {label}", _pair(calibrated, key, other)]
                      for label, key, other in DEMO_CALIBRATED_ROWS
                      if key in calibrated or other in calibrated])]
    return "\n\n".join(lines)


def readme_demo_block(records):
    """The README's demo table: the latest non-smoke demo record, with its machine."""
    demos = [r for r in records if r["benchmark"] == "demo" and not is_smoke(r)]
    if not demos:
        return None
    latest = max(demos, key=lambda r: r.get("date", ""))
    return "\n".join([README_BEGIN,
                      f"Measured by `tools/demo.py --record` on {machine_label(latest)}, "
                      f"{latest.get('date', '?')}:", "", render_demo(latest), README_END])


def update_readme(text, block):
    """``text`` with the part between the demo-table markers replaced by ``block``."""
    if block is None or README_BEGIN not in text or README_END not in text:
        return text
    head, rest = text.split(README_BEGIN, 1)
    return head + block + rest.split(README_END, 1)[1]


# ------------------------------------------------------------------------------ synth


SYNTH_V2_MAX_CPU_RATIO = 2.0  # v2 pictures may cost at most twice the CPU time of v1


def render_synth(record):
    fig = record["figures"]
    if "styles" not in fig:  # records from before the styles: one style, scalars
        return generic_figures(fig)
    lines = [f"{fig.get('batches')} batches of {fig.get('batch')} images at "
             f"{fmt(fig.get('image_size'))}, one core, {fig.get('threads')} OpenCV thread; "
             f"median images/s, wall clock and per CPU-second of this process (the figure a "
             f"dedicated core reaches); 1-min load average {fmt(fig.get('load_average_1min'))}.",
             table(["style", "generator version", "render + JPEG img/s", "per CPU-s",
                    "generate img/s", "per CPU-s"],
                   [[r["style"], str(r.get("generator_version", 1)),
                     fmt(r["render_jpeg_img_per_s"]),
                     fmt(r["render_jpeg_img_per_cpu_s"]), fmt(r["generate_img_per_s"]),
                     fmt(r["generate_img_per_cpu_s"])] for r in fig["styles"]])]
    ratio = fig.get("v2_over_v1_cpu_time")
    if ratio is not None:
        lines.append(f"v2 within {SYNTH_V2_MAX_CPU_RATIO:g}x the CPU time of v1 per image: "
                     + verdict(ratio <= SYNTH_V2_MAX_CPU_RATIO, f"{ratio:.2f}x"))
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ state recipes

# Targets of the state-recipe issue at the demo's budget (SynthBikes val): (label, figure,
# source, bound, higher is better). "calibrated" figures are those of the operating point
# chosen on val (what the inspection report uses), the others at the default point or
# threshold-free.
RECIPE_TARGETS = (
    ("damage AP >= 0.5", "verify/damage_ap", "metrics", 0.5, True),
    ("damage recall >= 0.6 (calibrated)", "damage_recall", "calibrated", 0.6, True),
    ("damage precision >= 0.6 (calibrated)", "damage_precision", "calibrated", 0.6, True),
    ("verdict macro-F1 >= 0.75 (calibrated)", "macro_f1", "calibrated", 0.75, True),
    ("hallucination at 95 % present recall <= 0.10", "verify/halluc_at_95r", "metrics", 0.10,
     False),
    ("hallucination at 95 % present recall <= 0.10 (calibrated presence rule)",
     "hallucination_rate", "calibrated", 0.10, False),
    ("`bbox/AP50` >= 75", "bbox/AP50", "metrics", 75.0, True),
)
# Plain detector over bikestate, hallucination at 95 % present recall.
PLAIN_DETECTOR_MIN_RATIO = 5.0
# Columns of the ablation table: (header, source, figure).
RECIPE_COLUMNS = (
    ("AP50", "metrics", "bbox/AP50"), ("AP", "metrics", "bbox/AP"),
    ("AUROC present", "metrics", "verify/auroc_present"),
    ("halluc. @95r", "metrics", "verify/halluc_at_95r"),
    ("damage AP", "metrics", "verify/damage_ap"),
    ("recall / halluc.", "metrics", ("verify/present_recall", "verify/hallucination_rate")),
    ("macro-F1", "metrics", "verify/macro_f1"),
    ("cal. P(present) / AUROC", "calibrated", ("presence", "auroc_present")),
    ("cal. recall / halluc.", "calibrated", ("present_recall", "hallucination_rate")),
    ("cal. damage P / R", "calibrated", ("damage_precision", "damage_recall")),
    ("cal. macro-F1", "calibrated", "macro_f1"),
    ("GT-box macro-F1", "metrics", "state_gt/macro_f1"),
)

# Figures of the per-recipe summary (mean and seed spread): (header, source, figure).
SUMMARY_COLUMNS = (
    # bbox/AP: a default may not cost more than 1 point of it (issue's rule for defaults).
    ("AP", "metrics", "bbox/AP"), ("cal. macro-F1", "calibrated", "macro_f1"),
    ("damage AP", "metrics", "verify/damage_ap"),
    ("halluc. @95r", "metrics", "verify/halluc_at_95r"),
    ("cal. halluc.", "calibrated", "hallucination_rate"),
)
SUMMARY_FIGURES = tuple((src, key) for _, src, key in SUMMARY_COLUMNS)


def _recipe_value(fig, source, key):
    return fig.get(source, {}).get(key)


def _recipe_cell(fig, source, key):
    if isinstance(key, tuple):
        return " / ".join(fmt(_recipe_value(fig, source, k)) for k in key)
    return fmt(_recipe_value(fig, source, key))


def _mean(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def render_state_recipes(records, include_smoke=False):
    """The ablation: per machine and budget one row per recipe and seed (the latest record of
    each), the recipes' means with the spread between seeds, and the targets checked on the
    default recipe's mean, next to the plain detector."""
    if os.path.dirname(HERE) not in sys.path:  # run as a script: benchmarks/ is on the path
        sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks.bench_state_recipe import DEFAULT_RECIPE, PLAIN_CONFIG, RECIPES, \
        plain_detector_for

    groups = {}
    for r in records:
        if is_smoke(r) and not include_smoke:
            continue
        fig = r["figures"]
        # Runs on different pictures are not seeds of one experiment: one table per version.
        groups.setdefault((machine_label(r), fig.get("budget"), fig.get("synth_version", 1)),
                          {})[(fig.get("recipe"), fig.get("seed"))] = r  # sorted by date
    out = []
    for (machine, budget, version), runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        some = next(iter(runs.values()))
        fig0 = some["figures"]
        out += [f"### {machine}, {fig0.get('iterations')} iterations ({budget}x the demo's "
                f"budget, SynthBikes generator version {version})", "",
                f"Machine: {machine_details(some)}. "
                + " and ".join(f"`{c}`" for c in sorted(
                    {str(r["figures"].get("config")) for r in runs.values()}))
                + f" with `bench_state_recipe.py`'s recipes, trained from scratch on "
                f"{fig0.get('train_images')} {synth_label(fig0)} images at "
                f"{fig0.get('image_size')}, scored on {fig0.get('val_images')} validation "
                "images. AP in percent, the rest in [0, 1]; `cal.`: the operating point chosen "
                "on val after training (scored on val itself: optimistic); `train s`: wall clock "
                "of the run, other jobs included (speed is `bench_speed`'s job). Damage AP of "
                "runs before 2026-12-03 ranked the parts without any detection last, which "
                "gave a model without a state branch the damaged share (0.069) and the others "
                "a few thousandths; since then those parts are misses (docs/verdict.md). Dates "
                f"{min(r['date'] for r in runs.values())} to "
                f"{max(r['date'] for r in runs.values())}.", ""]
        rows = []
        for (recipe, seed), r in sorted(runs.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
            fig = r["figures"]
            rows.append([f"`{recipe}`{' (default)' if recipe == DEFAULT_RECIPE else ''}",
                         str(seed), fmt(fig.get("wall_s"))]
                        + [_recipe_cell(fig, src, key) for _, src, key in RECIPE_COLUMNS])
        out += [table(["recipe", "seed", "train s"] + [h for h, _, _ in RECIPE_COLUMNS], rows),
                ""]
        by_recipe = {}
        for (recipe, _), r in runs.items():
            by_recipe.setdefault(recipe, []).append(r["figures"])
        summary = []
        for recipe, figs in sorted(by_recipe.items()):
            spread = []
            for src, key in SUMMARY_FIGURES:
                vals = [_recipe_value(f, src, key) for f in figs]
                vals = [v for v in vals if v is not None]
                spread.append(fmt(max(vals) - min(vals)) if len(vals) > 1 else "one seed")
            summary.append([f"`{recipe}`", str(len(figs)), figs[0].get("description", "")]
                           + [fmt(_mean([_recipe_value(f, "metrics", "bbox/AP50")
                                         for f in figs]))]
                           + [fmt(_mean([_recipe_value(f, src, key) for f in figs]))
                              for src, key in SUMMARY_FIGURES]
                           + spread)
        out += ["Mean over seeds, and the spread (max - min) between seeds: a difference "
                "between two recipes smaller than their spread is a tie.", "",
                table(["recipe", "seeds", "what", "AP50"] + [h for h, _, _ in SUMMARY_COLUMNS]
                      + [f"spread {h}" for h, _, _ in SUMMARY_COLUMNS], summary), ""]
        default = by_recipe.get(DEFAULT_RECIPE)
        # The demo's targets hold the default recipe at its budget; the plain detector is
        # compared at every budget, with the default or else each state recipe that ran.
        plains = {name for name, (config, _, _) in RECIPES.items() if config == PLAIN_CONFIG}
        targets, compared = [], {DEFAULT_RECIPE: default} if default else {
            r: figs for r, figs in by_recipe.items() if r not in plains and r in RECIPES}
        for label, key, src, bound, higher in RECIPE_TARGETS if default and budget == 1 else ():
            value = _mean([_recipe_value(f, src, key) for f in default])
            if value is None:
                targets.append(f"{label}: n/a")
                continue
            ok = value >= bound if higher else value <= bound
            how = f"{fmt(value)}" + ("" if ok else f", by {fmt(abs(value - bound))}")
            targets.append(f"{label}: {verdict(ok, how)}")
        for recipe, figs in sorted(compared.items()):
            # The plain detector with the recipe's detector settings.
            plain_name = plain_detector_for(recipe)
            plain = by_recipe.get(plain_name)
            for src, key, how in (("metrics", "verify/halluc_at_95r", "default rule"),
                                  ("calibrated", "hallucination_rate", "calibrated rules")):
                ours = _mean([_recipe_value(f, src, key) for f in figs])
                theirs = _mean([_recipe_value(f, src, key) for f in plain or []])
                if ours is None or theirs is None:
                    continue
                ratio = theirs / ours if ours > 0 else math.inf
                against = "" if recipe == DEFAULT_RECIPE else f" as `{recipe}`"
                targets.append(
                    f"plain detector (`{plain_name}`) hallucinates >= "
                    f"{PLAIN_DETECTOR_MIN_RATIO:g}x as often{against} at 95 % present recall "
                    f"({how}): "
                    + verdict(ratio >= PLAIN_DETECTOR_MIN_RATIO,
                              f"{fmt(theirs)} vs {fmt(ours)}: {fmt(ratio)}x"))
        if targets:
            out += [f"Targets, mean of the default recipe `{DEFAULT_RECIPE}`"
                    + ("" if default else " (not run at this budget)") + ":", "",
                    "\n".join(f"- {t}" for t in targets), ""]
    return "\n".join(out).rstrip()


RENDERERS = {"speed": render_speed, "accuracy": render_accuracy, "demo": render_demo,
             "assignment": render_assignment, "roi_align": render_roi_align,
             "export": render_export,
             "serve": render_serve, "synth": render_synth,
             "state_recipe_cost": render_state_recipe_cost}


# ------------------------------------------------------------------------------ document


def render_state_boxes(records):
    """One row per training folder (its latest record): the state head's AUROCs on the
    annotated boxes, on the same boxes moved, and on the detector's boxes."""
    latest = {}
    for r in records:
        latest[r["figures"].get("run")] = r
    rows = []
    for run, r in sorted(latest.items()):
        fig = r["figures"]
        row = [f"`{run}`", r.get("date", "?")[:16], machine_label(r)]
        for kind in ("annotated", "moved", "detected"):
            f = fig.get(kind, {})
            row.append(" / ".join(fmt(f.get(k)) for k in (
                "auroc_absent", "auroc_damaged", "median_p_absent_of_absent")))
        det = fig.get("detected", {})
        row.append(f"{fmt(det.get('on_the_part_absent'))} / {fmt(det.get('on_the_part_present'))}")
        rows.append(row)
    move = sorted({r["figures"].get("move") for r in latest.values()})
    return "\n\n".join([
        "`benchmarks/bench_state_boxes.py --run FOLDER`: the state head of a trained model "
        "classifies every annotated part of the validation set three times: on the annotated "
        f"box, on the same box with each side moved by a normal shift of "
        f"{', '.join(fmt(m) for m in move)} x its size, "
        "and on the detector's box (the highest-scoring detection of the part, as the report "
        "takes it; parts without one are left out). Each cell: AUROC of P(absent) for absent "
        "vs the rest / AUROC of P(damaged) for damaged vs the rest / median P(absent) of the "
        "absent parts.",
        table(["training folder", "date", "machine", "annotated boxes", "moved boxes",
               "detected boxes", "detected box on the part (IoU >= 0.5): absent / present"],
              rows)])


def render(records, include_smoke=False):
    """The whole RESULTS.md text for ``records`` (as :func:`load_records` returns them);
    ``include_smoke`` renders smoke-test records too (to check the rendering)."""
    by_bench = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], []).append(r)
    names = [b for b in ORDER if b in by_bench] + sorted(b for b in by_bench if b not in ORDER)
    out = ["# Benchmark results", "",
           "Generated by `python benchmarks/make_results.py` from the records in "
           "`benchmarks/results/*.jsonl`; do not edit by hand. Each section shows the latest "
           "record of each machine and scope; smoke-test records (quick/tiny runs) are left "
           "out. The scripts and what they measure are described in their docstrings "
           "(`benchmarks/bench_*.py`).", ""]
    for name in names:
        out += [f"## {TITLES.get(name, name)}", ""]
        if name == "state_recipe":
            out += [render_state_recipes(by_bench[name], include_smoke)
                    or "Only smoke-test records so far.", ""]
            continue
        if name == "state_boxes":
            out += [render_state_boxes(by_bench[name]), ""]
            continue
        latest = latest_per_machine(by_bench[name], include_smoke)
        if not latest:
            out += ["Only smoke-test records so far.", ""]
        for r in latest:
            what = f" ({scope(r)})" if scope(r) else ""
            out += [f"### {machine_label(r)}, {r.get('date', '?')}{what}", "",
                    f"Machine: {machine_details(r)}.", ""]
            renderer = RENDERERS.get(name)
            body = renderer(r) if renderer else generic_figures(r.get("figures", {}))
            out += [body, ""]
    out += ["## All records", "",
            table(["benchmark", "date", "machine", "smoke test"],
                  [[r["benchmark"], r.get("date", "?"), machine_label(r),
                    "yes" if is_smoke(r) else ""] for r in records]), ""]
    return "\n".join(out)


def _atomic_io():
    """``bikestate.utils.io`` loaded by path: importing the ``bikestate`` package would pull in
    torch and detectron2, which this script does not need."""
    import importlib.util

    path = os.path.join(os.path.dirname(HERE), "bikestate", "utils", "io.py")
    spec = importlib.util.spec_from_file_location("_bikestate_io", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the output file differs")
    parser.add_argument("--include-smoke", action="store_true",
                        help="render smoke-test records too (for checking the rendering)")
    parser.add_argument("--readme", default=DEFAULT_README,
                        help="README whose demo table is regenerated ('' to leave it)")
    args = parser.parse_args(argv)
    records = load_records(args.results_dir)
    outputs = {args.output: render(records, include_smoke=args.include_smoke)}
    if args.readme:
        with open(args.readme, encoding="utf-8") as f:
            outputs[args.readme] = update_readme(f.read(), readme_demo_block(records))
    stale = []
    for path, text in outputs.items():
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            _atomic_io().atomic_write_text(text, path)
            print(f"wrote {path}")
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python benchmarks/make_results.py",
                  file=sys.stderr)
        if not stale:
            print("RESULTS.md and the README's demo table are up to date")
        return 1 if stale else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
