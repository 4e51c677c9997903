"""SynthBikes rendering speed on one CPU core (issue 3 target: >= 20 images/s at 640x480).

Two figures, each the median images/s over ``--batches`` batches of ``--batch`` images:

* ``render_jpeg_img_per_s``: :func:`render_bike` plus JPEG encoding in memory (the generator's
  work per image);
* ``generate_img_per_s``: :func:`generate_synthbikes` end to end, writing images (atomically,
  with fsync) and the annotations to a temporary folder.

The process is pinned to one core and OpenCV / OpenMP to one thread. On a shared machine other
processes take turns on that core, so the CPU time of this process is recorded too:
``*_img_per_cpu_s`` is images per second of CPU time actually given to it, the figure that a
dedicated core would reach; the load average says how busy the machine was.

    python benchmarks/bench_synth.py [--batch 20] [--batches 5] [--size 640x480]
"""
import argparse
import os
import sys
import tempfile
import time

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy / OpenCV load their thread pools

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import append_record  # noqa: E402
from bikestate.synth import generate_synthbikes, render_bike  # noqa: E402


def images_per_second(fn, batch, batches):
    """Median images/s over batches: (wall-clock rate, CPU-time rate, all wall-clock rates)."""
    fn(0, min(batch, 3))  # warm-up: imports, caches
    rates, cpu_rates = [], []
    for b in range(batches):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(1000 + b * batch, batch)
        rates.append(batch / (time.perf_counter() - start))
        cpu_rates.append(batch / (time.process_time() - cpu_start))
    return float(np.median(rates)), float(np.median(cpu_rates)), rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20, help="images per timed batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches (median taken)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--no-record", action="store_true", help="do not append a record")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    def render_jpeg(first, count):
        for i in range(first, first + count):
            rng = np.random.default_rng([0, i])
            img, _ = render_bike(rng, width, height)
            ok, _ = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
            assert ok

    def generate(first, count):
        with tempfile.TemporaryDirectory() as tmp:
            generate_synthbikes(tmp, count, seed=first, image_size=(width, height),
                                show_progress=False)

    render_rate, render_cpu, render_all = images_per_second(render_jpeg, args.batch, args.batches)
    print(f"render + JPEG encode at {width}x{height}, one core: {render_rate:.1f} images/s wall "
          f"(batches: {', '.join(f'{r:.1f}' for r in render_all)}), {render_cpu:.1f} images per "
          f"CPU-second; target >= 20")
    generate_rate, generate_cpu, generate_all = images_per_second(generate, args.batch,
                                                                  args.batches)
    print(f"generate_synthbikes (with file writes): {generate_rate:.1f} images/s wall "
          f"(batches: {', '.join(f'{r:.1f}' for r in generate_all)}), {generate_cpu:.1f} images "
          f"per CPU-second")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average during the run: {load[0]:.2f}")
    if not args.no_record:
        append_record("synth", {
            "image_size": [width, height], "batch": args.batch, "batches": args.batches,
            "threads": 1, "render_jpeg_img_per_s": round(render_rate, 2),
            "generate_img_per_s": round(generate_rate, 2),
            "render_jpeg_img_per_cpu_s": round(render_cpu, 2),
            "generate_img_per_cpu_s": round(generate_cpu, 2),
            "load_average_1min": round(load[0], 2),
        })


if __name__ == "__main__":
    main()
