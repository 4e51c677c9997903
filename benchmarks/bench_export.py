"""Inference speed of exported models: PyTorch eager vs TorchScript vs onnxruntime, on the CPU.

For each config (``configs/bike_small_cpu.yaml`` and ``configs/bike_r50_fpn.yaml``, at their own
test sizes) the model (``--small-weights`` / ``--r50-weights``, else a seeded random
initialisation) is exported with ``tools/export_model.py``'s code to ONNX and TorchScript, and
each runtime predicts the same ``--images`` SynthBikes photos (640x480) with 1 and with 2
threads: ms per image (median of ``--repeats`` passes over the photos after one warm-up pass,
the whole predictor call: resize, graph, boxes back to the original pixels; the median of
``--rounds`` such workers, the runtimes taking turns in a rotating order, and the speed-up over
PyTorch eager the median of the rounds' paired ratios, so that the machine's slow and fast
phases fall on every runtime alike), the peak resident
memory of a process running only that runtime (the onnxruntime one cannot import torch or
detectron2, as in a deployment), the export's file size and how far its detections are from
PyTorch eager's at the same threads (photos whose detections differ in number, largest box and
score or state-probability differences, each detection paired with its twin). Each runtime runs
in its own process, one after the other, on the same photos. A trained model (``make demo``'s
``output/demo/train/model_best.pth`` for the small config) gives the real number of detections;
a random one keeps 100 per photo. A random R50's frozen BatchNorm statistics are first settled on
16 SynthBikes pictures (:func:`settle_frozen_batchnorm`), as a pre-trained backbone's would be.

    python benchmarks/bench_export.py                   # both configs, 1 and 2 threads
    python benchmarks/bench_export.py --small-weights output/demo/train/model_best.pth
    python benchmarks/bench_export.py --configs small
    python benchmarks/bench_export.py --quick           # smoke run: tiny photos and sizes

Prints a table and appends a record to ``benchmarks/results/export.jsonl``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.common import RESULTS_DIR, at_least, report  # noqa: E402

CONFIGS = {"small": os.path.join(REPO, "configs", "bike_small_cpu.yaml"),
           "r50": os.path.join(REPO, "configs", "bike_r50_fpn.yaml")}
RUNTIMES = ("pytorch", "torchscript", "onnxruntime")
# The export format each runtime other than PyTorch eager runs.
EXPORT_FORMAT = {"torchscript": "torchscript", "onnxruntime": "onnx"}
# How a model without weights is made (the records say it).
RANDOM_INIT = "frozen BatchNorm layers, if any, settled on 16 SynthBikes pictures"
# Smoke-run sizes: photos and test resize small enough for seconds per runtime.
QUICK_OPTS = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192"]


def config_opts(args, name):
    weights = {"small": args.small_weights, "r50": args.r50_weights}[name]
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights or ""]
    return opts + (QUICK_OPTS if args.quick else [])


# ------------------------------------------------------------------------------ worker


class _NoTorch:
    """Makes importing torch and detectron2 fail: the onnxruntime worker measures the memory of
    a deployment, which has neither."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "detectron2"):
            raise ImportError(f"{name} is not used by the onnxruntime runtime")
        return None


def peak_rss_mib():
    """Peak resident memory of this process (VmHWM: unlike ``ru_maxrss``, not inherited from
    the parent process)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(spec):
    """One runtime in this process: time it on the photos, report figures as JSON on stdout."""
    if spec["runtime"] == "onnxruntime":
        sys.meta_path.insert(0, _NoTorch())
    else:
        import torch

        torch.set_num_threads(spec["threads"])
    import bikestate  # noqa: F401  before detectron2

    images = list(np.load(spec["images"]).values())
    if spec["runtime"] == "pytorch":
        from bikestate.config import get_user_config
        from bikestate.inference import BikeStatePredictor, Detections

        cfg = get_user_config(spec["config"], spec["opts"])
        predictor = BikeStatePredictor(cfg)

        def predict(image):
            return Detections.from_instances(predictor(image))
    elif spec["runtime"] == "torchscript":
        from bikestate.deploy import TorchScriptBikeStatePredictor

        predict = TorchScriptBikeStatePredictor(spec["export"])
    else:
        from bikestate.deploy import OnnxBikeStatePredictor

        predict = OnnxBikeStatePredictor(spec["export"], num_threads=spec["threads"])

    outputs = [predict(image) for image in images]  # warm-up pass, and the outputs compared
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        for image in images:
            predict(image)
        times.append((time.perf_counter() - start) / len(images))
    np.savez(spec["outputs"], **{f"{i}_{k}": getattr(o, k) for i, o in enumerate(outputs)
                                  for k in ("boxes", "scores", "classes", "state_scores")})
    print(json.dumps({"ms_per_image": 1000 * statistics.median(times),
                      "peak_rss_mib": peak_rss_mib()}))


# ------------------------------------------------------------------------------ driver


def make_images(path, count, size, seed=0):
    from bikestate.synth import render_bike

    rng = np.random.default_rng(seed)
    width, height = size
    np.savez(path, **{str(i): np.ascontiguousarray(render_bike(rng, width, height)[0][:, :, ::-1])
                      for i in range(count)})


def settle_frozen_batchnorm(model, images_chw):
    """Give a randomly initialised model's frozen BatchNorm layers the statistics of their inputs
    on ``images_chw`` (float32 (3, H, W), 0-255, batched as the model pads them), as the
    pre-training of a real backbone would have; returns how many layers.

    With the initial statistics (mean 0, variance 1) the activations of a random R50 grow by
    orders of magnitude from stage to stage, its scores saturate at exactly 1.0 (NMS then keeps
    whichever of equal boxes float32 rounding puts first) and its state probabilities at 1e-30.
    Statistics of a single picture are not enough: a channel nearly constant on it amplifies
    every other picture (FPN outputs of ~40 on other photos). Training steps would not help:
    frozen BatchNorm layers do not learn.
    """
    import torch
    from detectron2.layers import FrozenBatchNorm2d

    def set_statistics(layer, inputs):
        layer.running_mean.copy_(inputs[0].mean(dim=(0, 2, 3)))
        layer.running_var.copy_(inputs[0].var(dim=(0, 2, 3)))

    handles = [m.register_forward_pre_hook(set_statistics) for m in model.modules()
               if isinstance(m, FrozenBatchNorm2d)]
    if not handles:  # e.g. a GroupNorm model: nothing to settle
        return 0
    try:
        with torch.no_grad():
            model.backbone(model.preprocess_image([{"image": x} for x in images_chw]).tensor)
    finally:
        for handle in handles:
            handle.remove()
    return len(handles)


def settling_pictures(cfg, count=16):
    """``count`` SynthBikes pictures at the config's test size (every fourth portrait), as the
    model's input: float32 (3, H, W)."""
    from bikestate.deploy.exporter import graph_input, sample_image

    return [graph_input(cfg, sample_image(cfg, seed=seed, portrait=seed % 4 == 3))
            for seed in range(count)]


def export_both(config, opts, folder):
    """ONNX and TorchScript exports of the config's model: {format: (folder, MiB, seconds)}."""
    import torch

    from bikestate.config import get_user_config
    from bikestate.deploy.exporter import build_export_model, export_model

    cfg = get_user_config(config, opts)
    cfg.freeze()
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    model = build_export_model(cfg)
    if not cfg.MODEL.WEIGHTS:  # the workers build the same random model from this file
        settle_frozen_batchnorm(model, settling_pictures(cfg))
        weights = os.path.join(folder, "random_init.pth")
        torch.save({"model": model.state_dict()}, weights)
        opts = opts + ["MODEL.WEIGHTS", weights]
        cfg = get_user_config(config, opts)
        cfg.freeze()
    exports = {}
    for fmt in ("onnx", "torchscript"):
        out = os.path.join(folder, fmt)
        start = time.perf_counter()
        info = export_model(cfg, out, fmt, model=model, config_file=config)
        exports[fmt] = (out, os.path.getsize(os.path.join(out, info["graph"])) / 2 ** 20,
                        time.perf_counter() - start)
    return exports, opts


def pair_detections(a, b, box_unit=1.0, prob_unit=1.0):
    """Pair each detection of ``a`` with the detection of ``b`` of the same part nearest in box
    (in ``box_unit`` pixels), score and state probabilities (in ``prob_unit``): two detections
    of nearly equal score may come in either order from two runtimes.

    Args:
        a, b: detections of one photo with ``boxes`` (N, 4), ``scores`` (N,), ``classes`` (N,)
            and ``state_scores`` (N, S) (e.g. :class:`bikestate.inference.Detections`).
    Returns:
        ndarray or None: (N,) index into ``b`` of each detection of ``a``; None when they do not
        pair one to one.
    """
    distance = (np.abs(a.boxes[:, None] - b.boxes[None]).max(axis=2) / box_unit
                + np.abs(a.scores[:, None] - b.scores[None]) / prob_unit
                + np.abs(a.state_scores[:, None] - b.state_scores[None]).max(axis=2) / prob_unit)
    distance[a.classes[:, None] != b.classes[None]] = np.inf
    pairs = distance.argmin(axis=1)
    if len(set(pairs.tolist())) != len(pairs) or np.isinf(distance.min(axis=1)).any():
        return None
    return pairs


def compare(reference, other, count):
    """How far ``other``'s detections are from ``reference``'s (two .npz files), each detection
    paired with its twin (:func:`pair_detections`); a photo whose detections differ in number or
    do not pair one to one counts as differing."""
    a, b = np.load(reference), np.load(other)
    differ, box, prob = 0, 0.0, 0.0
    for i in range(count):
        x, y = (SimpleNamespace(**{k: f[f"{i}_{k}"] for k in ("boxes", "scores", "classes",
                                                               "state_scores")})
                for f in (a, b))
        if x.scores.shape != y.scores.shape:
            differ += 1
            continue
        if not x.scores.size:
            continue
        pairs = pair_detections(x, y)
        if pairs is None:
            differ += 1
            continue
        box = max(box, float(np.abs(x.boxes - y.boxes[pairs]).max()))
        prob = max(prob, float(np.abs(x.scores - y.scores[pairs]).max()),
                   float(np.abs(x.state_scores - y.state_scores[pairs]).max()))
    return {"photos_with_other_detections": differ, "max_box_diff_px": box,
            "max_prob_diff": prob}


def measure(args):
    from tqdm import tqdm

    import bikestate  # noqa: F401

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        images = os.path.join(tmp, "images.npz")
        make_images(images, args.images, args.image_size)
        jobs = [(runtime, threads) for runtime in RUNTIMES for threads in args.threads]
        bar = tqdm(total=len(args.configs) * len(jobs) * args.rounds, desc="bench_export",
                   unit="run", file=sys.stderr)
        for name in args.configs:
            folder = os.path.join(tmp, name)
            exports, opts = export_both(CONFIGS[name], config_opts(args, name), folder)
            timed = {job: [] for job in jobs}  # (runtime, threads) -> one worker's figures a round
            for round_index in range(args.rounds):
                # Each round starts with another runtime, so that a slow phase of the machine
                # does not always fall on the same one.
                shift = round_index % len(jobs)
                for runtime, threads in jobs[shift:] + jobs[:shift]:
                    fmt = EXPORT_FORMAT.get(runtime)
                    spec = {"runtime": runtime, "threads": threads, "images": images,
                            "config": CONFIGS[name], "opts": opts, "repeats": args.repeats,
                            "export": exports[fmt][0] if fmt else None,
                            "outputs": os.path.join(folder, f"{runtime}_{threads}.npz")}
                    result = subprocess.run(
                        [sys.executable, __file__, "--worker", json.dumps(spec)],
                        capture_output=True, text=True, cwd=REPO,
                        env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
                    if result.returncode != 0:
                        raise SystemExit(f"{name} {runtime} {threads} threads failed:\n"
                                         f"{result.stderr[-3000:]}")
                    timed[(runtime, threads)].append(
                        json.loads(result.stdout.strip().splitlines()[-1]))
                    bar.update(1)
            for runtime, threads in jobs:
                rounds = [r["ms_per_image"] for r in timed[(runtime, threads)]]
                eager = [r["ms_per_image"] for r in timed[("pytorch", threads)]]
                row = {"config": name, "runtime": runtime, "threads": threads,
                       "ms_per_image": statistics.median(rounds), "ms_per_image_rounds": rounds,
                       # Paired: each round's eager time over this runtime's in the same round.
                       "speedup_vs_eager": statistics.median(e / r for e, r in zip(eager, rounds)),
                       "peak_rss_mib": max(r["peak_rss_mib"] for r in timed[(runtime, threads)])}
                fmt = EXPORT_FORMAT.get(runtime)
                if fmt:
                    row["export_mib"], row["export_s"] = exports[fmt][1], exports[fmt][2]
                # Compared with PyTorch eager at the same threads (their number changes the
                # order of floating-point sums); the outputs are those of the last round.
                row.update(compare(os.path.join(folder, f"pytorch_{threads}.npz"),
                                   os.path.join(folder, f"{runtime}_{threads}.npz"), args.images))
                rows.append(row)
        bar.close()
    return rows


def print_table(figures):
    from tabulate import tabulate

    print(tabulate([[r["config"], r["runtime"], r["threads"], f"{r['ms_per_image']:.1f}",
                     f"{r['speedup_vs_eager']:.2f}x", f"{r['peak_rss_mib']:.0f}",
                     f"{r['export_mib']:.1f}" if "export_mib" in r else "",
                     r["photos_with_other_detections"], f"{r['max_box_diff_px']:.2g}",
                     f"{r['max_prob_diff']:.2g}"] for r in figures["rows"]],
                   headers=["config", "runtime", "threads", "ms/image", "vs eager",
                            "peak RSS MiB", "export MiB", "photos differing", "max box diff px",
                            "max prob diff"]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--small-weights", default="", metavar="FILE",
                        help="weights of the small config (default: seeded random init)")
    parser.add_argument("--r50-weights", default="", metavar="FILE",
                        help="weights of the R50 config (default: seeded random init)")
    parser.add_argument("--images", type=at_least(1), default=8)
    parser.add_argument("--repeats", type=at_least(1), default=5,
                        help="timed passes over the photos")
    parser.add_argument("--threads", type=at_least(1), nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=at_least(1), default=None,
                        help="times every runtime is run, in a rotating order (each round's "
                             "worker process times --repeats passes; default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 photos of 160x120, test size 128-192, 1 repeat")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.image_size = (640, 480)
    if args.quick:
        args.images, args.repeats, args.image_size = 2, 1, (160, 120)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(json.loads(args.worker))
    start = time.perf_counter()
    rows = measure(args)
    figures = {
        "configs": args.configs,
        "images": args.images,
        "image_size": list(args.image_size),
        "repeats": args.repeats,
        "rounds": args.rounds,
        "weights": {name: (args.small_weights if name == "small" else args.r50_weights)
                    or "random" for name in args.configs},
        "random_init": RANDOM_INIT,
        "threads": args.threads,
        "quick": bool(args.quick),
        "opts": QUICK_OPTS if args.quick else [],
        "load_average_1min": os.getloadavg()[0],
        "rows": rows,
    }
    figures["wall_s"] = time.perf_counter() - start
    return report("export", figures, print_table, args)


if __name__ == "__main__":
    main()
