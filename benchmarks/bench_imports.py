#!/usr/bin/env python
"""Start-up cost of bikestate's entry points: wall time of ``python -c "import M"`` per module.

Each module is imported in a fresh interpreter (``repeats`` times, median), with the bare
interpreter's start-up (``python -c pass``) measured the same way and subtracted, so the figure is
what the import adds. Also records which heavy libraries each import pulls in (torch,
detectron2, cv2): the light entry points (constants, collect_env, the annotation converter and
splitter) must pull none of them.

    python benchmarks/bench_imports.py               # 5 repeats, record appended
    python benchmarks/bench_imports.py --quick --no-record

Prints a table and appends a record to ``benchmarks/results/imports.jsonl``.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, report  # noqa: E402

# (module, its job): light entry points first, then what needs the model.
MODULES = (
    ("bikestate.constants", "part and state names"),
    ("bikestate.collect_env", "environment report"),
    ("bikestate.data.coco", "annotation converter"),
    ("bikestate.data.split", "dataset splitter"),
    ("bikestate.verdict", "verdict rule"),
    ("bikestate", "the package"),
    ("bikestate.modeling", "model parts (registration)"),
    ("bikestate.engine", "trainer"),
)
HEAVY = ("torch", "detectron2", "cv2")
# Goal for the light entry points.
LIGHT_MAX_S = 0.5


def _start(code):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stdout


def measure(repeats):
    bare = statistics.median(_start("pass")[0] for _ in range(repeats))
    rows = []
    probe = "import sys; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    for module, job in MODULES:
        times, loaded = [], ""
        for _ in range(repeats):
            seconds, loaded = _start(f"import {module}; " + probe.format(heavy=HEAVY))
            times.append(seconds)
        rows.append({"module": module, "job": job,
                     "import_s": round(statistics.median(times) - bare, 3),
                     "loads": loaded.strip() or "-"})
    return {"repeats": repeats, "python_start_s": round(bare, 3), "light_max_s": LIGHT_MAX_S,
            "modules": rows}


def print_tables(figures):
    from tabulate import tabulate

    print(f"import time beyond the interpreter's start-up ({figures['python_start_s']} s), "
          f"median of {figures['repeats']}")
    print(tabulate([[r["module"], r["job"], r["import_s"], r["loads"]]
                    for r in figures["modules"]],
                   headers=["module", "job", "import s", "loads"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat")
    parser.add_argument("--no-record", action="store_true", help="print only, append no record")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    figures = measure(1 if args.quick else args.repeats)
    figures["quick"] = args.quick
    report("imports", figures, print_tables, args)


if __name__ == "__main__":
    main()
