"""Shared helpers of the benchmark scripts: machine description and JSON records.

Every benchmark appends one JSON record per run to ``benchmarks/results/<name>.jsonl``;
``benchmarks/make_results.py`` regenerates RESULTS.md from those records.
"""
import datetime
import json
import os
import platform
import statistics
import time

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine_info():
    """Facts that make a figure comparable: host, CPU count, device, library versions."""
    import torch

    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
    }
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["device_name"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        import detectron2

        info["detectron2"] = detectron2.__version__
    except ImportError:
        pass
    return info


def at_least(low):
    """argparse type: an int >= ``low``."""
    import argparse

    def parse(text):
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def append_record(name, figures, results_dir=None):
    """Append ``{"benchmark", "date", "machine", "figures"}`` to ``<results_dir>/<name>.jsonl``.

    Returns the record. One line per record keeps concurrent appends safe and history intact.
    """
    results_dir = results_dir or RESULTS_DIR
    os.makedirs(results_dir, exist_ok=True)
    record = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "figures": figures,
    }
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(os.path.join(results_dir, f"{name}.jsonl"), "a", encoding="utf-8") as f:
        f.write(line)
    return record


def report(name, figures, print_tables, args):
    """Print ``figures`` with ``print_tables`` and, unless ``args.no_record``, append them as a
    ``name`` record to ``args.results_dir``. Returns ``figures``."""
    print_tables(figures)
    if not args.no_record:
        append_record(name, figures, results_dir=args.results_dir)
        print(f"\nrecord appended to {os.path.join(args.results_dir, name + '.jsonl')}")
    return figures


def median_time(fn, repeats, warmup=1, sync=None):
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_cuda_syncs(fn):
    """Host synchronizations during one call of ``fn`` on CUDA: every operation that makes the
    host wait for the GPU (``item()``, ``nonzero``, a blocking copy, ...), as
    ``torch.cuda.set_sync_debug_mode("warn")`` reports them (warnings of the backward pass
    included: autograd replays them in the calling thread). Returns ``(result, count)``."""
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchronizing" in str(w.message) for w in caught)
