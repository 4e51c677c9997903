"""Quick runs of ``benchmarks/bench_state_recipe.py`` (12 iterations, 8 + 4 images) for the
tests of the benchmarks that train or read a training folder."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One thread per process: the suite's other tests share the cores.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def quick_recipe_run(root, recipe, seed=7):
    """Run ``recipe`` quickly in ``root`` (results/, work/, cache/ inside it).

    Returns:
        (list[dict], str, str): the state_recipe records written, the run's training folder,
        the benchmark's stdout.
    """
    results, work = os.path.join(root, "results"), os.path.join(root, "work")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_state_recipe.py"), "--quick",
         "--recipes", recipe, "--seeds", str(seed), "--results-dir", results,
         "--work-dir", work, "--cache-dir", os.path.join(root, "cache")],
        cwd=str(root), env=ONE_THREAD, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(results, "state_recipe.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records, os.path.join(work, f"{recipe}_b1_s{seed}"), proc.stdout
