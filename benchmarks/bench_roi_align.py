"""ROIAlign's CPU backward: torchvision's per-element loop against bikestate's matrix products.

``MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD`` chooses how the gradient of the box head's (and a
feature-pooling state head's) ROIAlign reaches the feature maps on CPU
(:mod:`bikestate.modeling.roi_align`). Two stages, on ``configs/bike_small_cpu.yaml`` at its test
size (320x427) with two SynthBikes v2 pictures, weights settled by ``--settle-steps`` training
steps:

* ``backward``: the ROIAlign backward alone, on the feature maps and ROIs that one training step
  pools (captured from that step), summed over the levels: ms per training step;
* ``train_step``: the whole training step (forward, backward, AdamW) of the same model with
  either backward, weights and optimizer restored and the same proposals sampled before each
  run.

Each figure is the median of ``--repeats`` alternating runs after ``--warmup``; the speed-up is
also given as the median of the paired per-round ratios. The record also holds the largest
difference between the two gradients of the feature maps.

    python benchmarks/bench_roi_align.py               # 2 threads, 30 repeats
    python benchmarks/bench_roi_align.py --quick       # smoke run (2 repeats)

Prints a table and appends a record to ``benchmarks/results/roi_align.jsonl``.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_speed import (  # noqa: E402
    SMALL_CONFIG,
    D2Runner,
    alternate,
    load_cfg,
    synthetic_samples,
)
from benchmarks.common import RESULTS_DIR, at_least, report  # noqa: E402

IMAGE_SIZE = (320, 427)  # the small config's test size of a 640x480 picture
BACKWARDS = ("torchvision", "matmul")


def capture_pooler_calls(runner, batch):
    """(features, rois, output_size, scale, sampling_ratio, aligned) of every ROIAlign call of
    one training step whose features need a gradient."""
    from detectron2.layers import ROIAlign

    calls = []
    original = ROIAlign.forward
    torch.manual_seed(0)

    def spy(layer, features, rois):
        if features.requires_grad:
            calls.append((features.detach().clone(), rois.detach().clone(), layer.output_size,
                          layer.spatial_scale, layer.sampling_ratio, layer.aligned))
        return original(layer, features, rois)

    ROIAlign.forward = spy
    try:
        runner.train_step(batch)
    finally:
        ROIAlign.forward = original
    return calls


def backward_fns(calls):
    """name -> callable running every captured call's backward; and the largest difference
    between the two gradients."""
    from torchvision.ops import roi_align

    from bikestate.modeling.roi_align import roi_align_backward

    prepared = []
    for features, rois, size, scale, ratio, aligned in calls:
        x = features.clone().requires_grad_(True)
        out = roi_align(x, rois, size, scale, ratio, aligned)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
        prepared.append((x, out, grad, rois, scale, ratio, aligned))

    def torchvision_backward():
        grads = []
        for x, out, grad, *_ in prepared:
            grads.append(torch.autograd.grad(out, x, grad, retain_graph=True)[0])
        return grads

    def matmul_backward():
        return [roi_align_backward(grad, rois, x.shape, scale, ratio, aligned)
                for x, _, grad, rois, scale, ratio, aligned in prepared]

    reference = torchvision_backward()
    diff = max((a - b).abs().max().item() for a, b in zip(reference, matmul_backward()))
    scale = max(g.abs().max().item() for g in reference)
    return {"torchvision": torchvision_backward, "matmul": matmul_backward}, diff, scale


def measure(args):
    from bikestate.modeling.roi_align import set_pooler_cpu_backward

    cfg = load_cfg(SMALL_CONFIG, "cpu", IMAGE_SIZE)
    runner = D2Runner(cfg)
    batch = runner.inputs(synthetic_samples(2, IMAGE_SIZE))
    runner.settle(batch, args.settle_steps)
    poolers = [p for p in (runner.model.roi_heads.box_pooler,
                           getattr(runner.model.roi_heads, "state_pooler", None)) if p is not None]

    def use(backward):
        def run():
            for pooler in poolers:
                set_pooler_cpu_backward(pooler, backward)
            runner.restore()
            torch.manual_seed(0)  # the same proposals sampled with either backward
        return run

    use("torchvision")()  # detectron2's own ROIAlign modules: what the capture sees
    calls = capture_pooler_calls(runner, batch)
    rows = []
    fns, diff, grad_scale = backward_fns(calls)
    times, runs = alternate(fns, args.repeats, args.warmup, "cpu", "ROIAlign backward")
    rows.append(_row("backward", times, runs))

    steps = {name: (lambda: runner.train_step(batch)) for name in BACKWARDS}
    times, runs = alternate(steps, args.repeats, args.warmup, "cpu", "training step",
                            setup={name: use(name) for name in BACKWARDS})
    rows.append(_row("train_step", times, runs))
    pooled = [{"level_shape": list(c[0].shape), "rois": int(c[1].shape[0]),
               "spatial_scale": c[3], "sampling_ratio": c[4]} for c in calls]
    return rows, pooled, diff, grad_scale


def _row(stage, times, runs):
    return {"stage": stage, "torchvision_ms": 1000 * times["torchvision"],
            "matmul_ms": 1000 * times["matmul"],
            "speedup": times["torchvision"] / times["matmul"],
            "speedup_paired": statistics.median(
                a / b for a, b in zip(runs["torchvision"], runs["matmul"])),
            "torchvision_runs_ms": [1000 * t for t in runs["torchvision"]],
            "matmul_runs_ms": [1000 * t for t in runs["matmul"]]}


def print_table(fig):
    from tabulate import tabulate

    print(f"\nROIAlign CPU backward, small config at {fig['image_size']}, "
          f"{fig['threads']} threads; pooled per step: "
          + ", ".join(f"{c['rois']} ROIs on {c['level_shape']}" for c in fig["pooled"]))
    print(tabulate([[r["stage"], f"{r['torchvision_ms']:.1f}", f"{r['matmul_ms']:.1f}",
                     f"{r['speedup']:.2f}x", f"{r['speedup_paired']:.2f}x"] for r in fig["rows"]],
                   headers=["stage", "torchvision ms", "matmul ms", "speed-up",
                            "paired speed-up"]))
    print(f"largest gradient difference {fig['max_grad_diff']:.2e} "
          f"(largest gradient {fig['max_grad']:.2f})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=at_least(1), default=30)
    parser.add_argument("--warmup", type=at_least(0), default=2)
    parser.add_argument("--settle-steps", type=at_least(0), default=4)
    parser.add_argument("--threads", type=at_least(1), default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 repeats, no warm-up, 1 settling step")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.settle_steps = 2, 0, 1
    torch.set_num_threads(args.threads)
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    rows, pooled, diff, grad_scale = measure(args)
    figures = {
        "device": "cpu",
        "config": os.path.basename(SMALL_CONFIG),
        "image_size": list(IMAGE_SIZE),
        "images": 2,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "settle_steps": args.settle_steps,
        "threads": torch.get_num_threads(),
        "quick": bool(args.quick),
        "load_average_1min": load,
        "pooled": pooled,
        "max_grad_diff": diff,
        "max_grad": grad_scale,
        "rows": rows,
    }
    figures["wall_s"] = time.perf_counter() - start
    return report("roi_align", figures, print_table, args)


if __name__ == "__main__":
    main()
