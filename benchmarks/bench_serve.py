"""The inspection service under load: N concurrent clients on loopback for a bounded time.

Starts ``tools/serve.py`` as users do (its own process, ``--threads`` torch threads, a queue of
``--queue-size``), sends ``--warmup`` requests, then lets ``--clients`` clients post SynthBikes
photos (``--image-size``, 640x480 by default) to ``POST /v1/inspect`` back to back for
``--duration`` seconds. Measures the latency of each answered request as the client sees it
(p50, p95, p99, mean), the throughput (answers per second), the answers by status (503: queue
full, counted apart from errors), the server's own inference time (p50 of ``timing``), and the
server's resident memory after the warm-up and at the end (growth in percent).

The model is ``--model`` (a training folder, e.g. ``output/demo/train``) or, by default, the
small config (``configs/bike_small_cpu.yaml``) with random weights: the time per photo is the
model's, whatever its weights, except that a trained model's few detections are cheaper to
report and draw than an untrained one's many.

    python benchmarks/bench_serve.py --model output/demo/train      # 4 clients, 60 s
    python benchmarks/bench_serve.py --clients 8 --duration 120 --image
    python benchmarks/bench_serve.py --quick                        # smoke run (2 clients, 3 s)

Prints a table and appends a record to ``benchmarks/results/serve.jsonl``.
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, at_least, report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
NUM_PHOTOS = 8  # distinct photos the clients cycle through


def percentile(values, q):
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def make_inputs(workdir, args):
    """(model argument, extra serve.py arguments, photo bytes) for the run."""
    from bikestate.synth import generate_synthbikes

    generate_synthbikes(os.path.join(workdir, "photos"), num_images=NUM_PHOTOS, seed=11,
                        image_size=args.image_size, show_progress=False)
    folder = os.path.join(workdir, "photos", "images")
    photos = [open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))]
    if args.model:
        return args.model, [], photos
    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from bikestate import add_bikestate_config

    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(SMALL_CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    weights = os.path.join(workdir, "model_final.pth")
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    return weights, ["--config-file", SMALL_CONFIG], photos


def start_server(model, extra, args, log):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, os.path.join(REPO, "tools", "serve.py"), "--model", model,
               *extra, "--port", str(port), "--threads", str(args.threads),
               "--queue-size", str(args.queue_size), *args.opts]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    return proc, f"http://127.0.0.1:{port}"


def wait_until_ready(proc, url, timeout=300):
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve.py exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"serve.py did not answer /healthz within {timeout} s")


def load(url, photos, args):
    """Every client's (status, seconds, server inference ms) until the deadline."""
    import httpx

    params = {"image": 1} if args.image else None
    answers, lock = [], threading.Lock()
    deadline = time.monotonic() + args.duration

    def client(index):
        mine = []
        with httpx.Client(base_url=url, timeout=300) as http:
            i = index
            while time.monotonic() < deadline:
                data = photos[i % len(photos)]
                i += args.clients
                start = time.perf_counter()
                response = http.post("/v1/inspect", params=params,
                                     files={"photo": (f"photo{i}.jpg", data)})
                elapsed = time.perf_counter() - start
                inference = (response.json()["timing"]["inference_ms"]
                             if response.status_code == 200 else None)
                mine.append((response.status_code, elapsed, inference))
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers, time.perf_counter() - started


def measure(args):
    import httpx
    from tqdm import tqdm

    with tempfile.TemporaryDirectory() as workdir, \
            open(os.path.join(workdir, "serve.log"), "w+") as log:
        model, extra, photos = make_inputs(workdir, args)
        proc, url = start_server(model, extra, args, log)
        try:
            wait_until_ready(proc, url)
            description = httpx.get(url + "/v1/model").json()
            with httpx.Client(base_url=url, timeout=300) as http:
                for i in tqdm(range(args.warmup), desc="warm-up", file=sys.stderr):
                    http.post("/v1/inspect", files={"photo": ("w.jpg", photos[i % len(photos)])})
            rss_before = rss_mib(proc.pid)
            print(f"{args.clients} clients for {args.duration} s ...", file=sys.stderr)
            answers, wall = load(url, photos, args)
            rss_after = rss_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok = [a for a in answers if a[0] == 200]
    latencies = [1000 * a[1] for a in ok]
    statuses = {}
    for status, _, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "config_name": description.get("config_name"),
        "weights_sha256": description.get("weights_sha256"),
        "min_size_test": description.get("min_size_test"),
        "max_size_test": description.get("max_size_test"),
        "requests": len(answers),
        "answered_200": len(ok),
        "rejected_503": statuses.get("503", 0),
        "errors": len(answers) - len(ok) - statuses.get("503", 0),
        "statuses": statuses,
        "throughput_per_s": len(ok) / wall if wall else None,
        "latency_p50_ms": percentile(latencies, 0.50),
        "latency_p95_ms": percentile(latencies, 0.95),
        "latency_p99_ms": percentile(latencies, 0.99),
        "latency_mean_ms": statistics.fmean(latencies) if latencies else None,
        "inference_p50_ms": percentile([a[2] for a in ok], 0.50),
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        "rss_growth_pct": 100 * (rss_after - rss_before) / rss_before,
        "measured_s": wall,
    }


def print_table(fig):
    from tabulate import tabulate

    print(f"\nInspection service, {fig['clients']} clients x {fig['duration_s']} s, "
          f"{fig['threads']} torch threads, queue {fig['queue_size']}, photos "
          f"{fig['image_size'][0]}x{fig['image_size'][1]}{' + picture' if fig['image'] else ''}")
    print(tabulate([
        ["requests (200 / 503 / errors)",
         f"{fig['requests']} ({fig['answered_200']} / {fig['rejected_503']} / {fig['errors']})"],
        ["throughput, photos/s", f"{fig['throughput_per_s']:.2f}"],
        ["latency p50 / p95 / p99, ms", " / ".join(
            "n/a" if fig[k] is None else f"{fig[k]:.0f}"
            for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"))],
        ["server inference p50, ms", "n/a" if fig["inference_p50_ms"] is None
         else f"{fig['inference_p50_ms']:.0f}"],
        ["server RSS before / after, MiB (growth)",
         f"{fig['rss_before_mib']:.0f} / {fig['rss_after_mib']:.0f} "
         f"({fig['rss_growth_pct']:+.1f} %)"],
    ], headers=["figure", "value"]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="training folder or weights (default: the small config, random "
                             "weights)")
    parser.add_argument("--clients", type=at_least(1), default=4)
    parser.add_argument("--duration", type=at_least(1), default=60, help="seconds of load")
    parser.add_argument("--threads", type=at_least(1), default=2, help="server torch threads")
    parser.add_argument("--queue-size", type=at_least(1), default=None,
                        help="server queue (default: 2 x clients, so that none is refused)")
    parser.add_argument("--warmup", type=at_least(0), default=4, help="requests before timing")
    parser.add_argument("--image-size", default="640x480", help="photo WIDTHxHEIGHT")
    parser.add_argument("--image", action="store_true", help="also ask for the picture")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 clients, 3 s, 1 warm-up request, 1 thread")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides passed to serve.py (KEY VALUE ...)")
    args = parser.parse_args(argv)
    try:
        args.image_size = tuple(int(v) for v in args.image_size.lower().split("x"))
        assert len(args.image_size) == 2
    except (ValueError, AssertionError):
        parser.error(f"--image-size must be WIDTHxHEIGHT, got {args.image_size}")
    if args.quick:
        args.clients, args.duration, args.warmup, args.threads = 2, 3, 1, 1
    args.queue_size = args.queue_size or 2 * args.clients
    return args


def main(argv=None):
    args = parse_args(argv)
    import bikestate  # noqa: F401  first: quiets library notices

    figures = {"clients": args.clients, "duration_s": args.duration, "threads": args.threads,
               "queue_size": args.queue_size, "image_size": list(args.image_size),
               "image": bool(args.image), "warmup": args.warmup, "model": args.model or
               "configs/bike_small_cpu.yaml, random weights", "opts": list(args.opts),
               "quick": bool(args.quick), "load_average_1min": os.getloadavg()[0]}
    figures.update(measure(args))
    return report("serve", figures, print_table, args)


if __name__ == "__main__":
    main()
