"""SynthBikes rendering speed on one CPU core, per picture style (targets: >= 20 images/s at
640x480 for v1; v2 at least half as fast as v1, in CPU time).

For each style of ``--styles``, in the same run, two figures, each the median images/s over
``--batches`` batches of ``--batch`` images:

* ``render_jpeg_img_per_s``: :func:`render_bike` plus JPEG encoding in memory (the generator's
  work per image);
* ``generate_img_per_s``: :func:`generate_synthbikes` end to end, writing images (atomically,
  with fsync) and the annotations to a temporary folder.

The process is pinned to one core and OpenCV / OpenMP to one thread. On a shared machine other
processes take turns on that core, so the CPU time of this process is recorded too:
``*_img_per_cpu_s`` is images per second of CPU time actually given to it, the figure that a
dedicated core would reach; the load average says how busy the machine was.

``v2_over_v1_cpu_time`` is the CPU time per v2 image over that of v1 (render + JPEG).

    python benchmarks/bench_synth.py [--batch 20] [--batches 5] [--size 640x480] \
        [--styles v1,v2]
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
from bikestate.synth import SYNTH_VERSIONS, generate_synthbikes, render_bike  # noqa: E402


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
    parser.add_argument("--styles", default="v1,v2", help="picture styles, comma-separated")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 images x 1 batch at 160x120 (recorded as quick)")
    parser.add_argument("--results-dir", default=None, help="where records go")
    parser.add_argument("--no-record", action="store_true", help="do not append a record")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.batches, args.size = 2, 1, "160x120"
    width, height = (int(v) for v in args.size.lower().split("x"))

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    styles = [v.strip() for v in args.styles.split(",") if v.strip()]
    rows = [dict(measure_style(style, width, height, args.batch, args.batches),
                 generator_version=SYNTH_VERSIONS[style]) for style in styles]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average during the run: {load[0]:.2f}")
    figures = {"image_size": [width, height], "batch": args.batch, "batches": args.batches,
               "threads": 1, "styles": rows, "load_average_1min": round(load[0], 2),
               "quick": args.quick}
    by_style = {r["style"]: r for r in rows}
    if "v1" in by_style and "v2" in by_style:
        ratio = by_style["v1"]["render_jpeg_img_per_cpu_s"] / \
            by_style["v2"]["render_jpeg_img_per_cpu_s"]
        figures["v2_over_v1_cpu_time"] = round(ratio, 2)
        print(f"v2 takes {ratio:.2f}x the CPU time of v1 per image (target <= 2)")
    if not args.no_record:
        append_record("synth", figures, args.results_dir)


def measure_style(style, width, height, batch, batches):
    """Render + JPEG and generate_synthbikes rates of one style: a dict of figures."""
    def render_jpeg(first, count):
        for i in range(first, first + count):
            rng = np.random.default_rng([0, i])
            img, _ = render_bike(rng, width, height, style=style)
            ok, _ = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
            assert ok

    def generate(first, count):
        with tempfile.TemporaryDirectory() as tmp:
            generate_synthbikes(tmp, count, seed=first, image_size=(width, height),
                                show_progress=False, style=style)

    render_rate, render_cpu, render_all = images_per_second(render_jpeg, batch, batches)
    print(f"{style}: render + JPEG encode at {width}x{height}, one core: {render_rate:.1f} "
          f"images/s wall (batches: {', '.join(f'{r:.1f}' for r in render_all)}), "
          f"{render_cpu:.1f} images per CPU-second")
    generate_rate, generate_cpu, generate_all = images_per_second(generate, batch, batches)
    print(f"{style}: generate_synthbikes (with file writes): {generate_rate:.1f} images/s wall "
          f"(batches: {', '.join(f'{r:.1f}' for r in generate_all)}), {generate_cpu:.1f} "
          f"images per CPU-second")
    return {"style": style, "render_jpeg_img_per_s": round(render_rate, 2),
            "generate_img_per_s": round(generate_rate, 2),
            "render_jpeg_img_per_cpu_s": round(render_cpu, 2),
            "generate_img_per_cpu_s": round(generate_cpu, 2)}


if __name__ == "__main__":
    main()
