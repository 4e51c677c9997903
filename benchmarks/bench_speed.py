"""Speed of bikestate: the state branch's cost, bikestate against the seed pipeline, data loading.

All in one process, on one synthetic batch of SynthBikes pictures (22 annotated parts each)
rendered at exactly the input size, so no model resizes anything. Timed functions alternate
(A B B A ...) and each figure is the median of ``--repeats`` runs after ``--warmup`` runs;
on CUDA every run ends with ``torch.cuda.synchronize()``.

The cost of a step depends on the weights: as the RPN learns, its proposals spread out and
non-maximum suppression and matching do more work (on this CPU a free-running R50-FPN step went
from 4 s to 7 s within its first five steps from random initialisation, while restoring the
weights before each step kept it at 3.5 s). A free-running A/B comparison therefore measures
two models at different points of their own trajectories. So every model first trains
``--settle-steps`` steps on the batch, its weights and optimizer state are snapshotted, and the
snapshot is restored (untimed) before every warm-up and timed run, training and inference:
each figure is the cost of the same step at the same weights.

1. **State branch overhead**: each config in ``--overhead-configs`` as is (``StateROIHeads``)
   against the same config with detectron2's plain ``StandardROIHeads``: after the state
   model's settling steps the plain model takes over its weights and optimizer state (all but
   the state head's), and the random seed is reset before every run, so both propose and
   sample the same boxes; training step (forward, loss read-out, backward, optimizer step) and
   inference at batch 2, with every image keeping 100 detections (``SCORE_THRESH_TEST 0``, the
   state head's worst case); ``--overhead-repeats`` training rounds (default 3x ``--repeats``)
   and four times as many inference rounds, since differences of 2 % need many; ``*_overhead_pct`` =
   100 x (state / plain - 1) of the medians (``*_paired``: median of the per-round ratios).
   Targets (CPU): <= 3 % training, <= 2 % inference.
2. **bikestate against the seed baseline** (:mod:`benchmarks.seed_baseline`): bikestate's
   R50-FPN config with ``MODEL.WEIGHTS ""`` against torchvision's ``fasterrcnn_resnet50_fpn``
   + the seed's state head, both with FrozenBatchNorm and ResNet stages 3-5 trainable (stem and
   stage 2 frozen), AdamW, same images: training images/s and inference ms/image (detections
   with states for both) at each ``--batch-sizes``, fp32 and, on CUDA, AMP (float16 autocast +
   GradScaler). bikestate is trained twice, with detectron2's per-image training-target
   assignment (``bikestate``) and with the batched one (``bikestate_batched``: ``BatchedRPN``
   and ``BatchedStateROIHeads``, which takes over the settled weights of the first; inference is
   the same code, timed once). Per model and training step, on CUDA: the GPU busy time of one
   profiled step (:func:`profile_step`) and the host synchronizations of one step
   (:func:`benchmarks.common.count_cuda_syncs`; null on CPU). Peak memory: on CUDA
   ``torch.cuda.max_memory_allocated`` over one step (absolute: weights, optimizer state and
   activations); on CPU the peak resident set (``VmHWM``) of a fresh process (``spawn``) that
   builds only that model and runs two training steps (the second with the optimizer state
   allocated) or one inference: weights, optimizer state, activations and the framework the
   pipeline imports (torch + detectron2 for bikestate, torch + torchvision for the seed);
   these processes run two at a time after every timing is done.
   Measuring inside the benchmark's own process cannot work on CPU: the allocator keeps freed
   memory, so a step's growth over the resident set of earlier steps is often zero.
   Target (CUDA, AMP, batch 8): bikestate >= 1.3x the seed's training images/s.
3. **Training data loader**: ``BikeStateTrainer.build_train_loader`` (BikeStateDatasetMapper,
   augmentations of the R50-FPN config resized to the input size) on SynthBikes JPEGs written
   to a cache folder, with 0 and 2 workers (``--loader-workers``; a GPU host needs more):
   images/s over ``--loader-batches`` batches after the first (worker start-up excluded).

``--profile-dir DIR`` also profiles one training step of each part-2 model per batch size and
precision (:func:`profile_step`): where a step's time goes, and on CUDA whether it waits on the
GPU or on the host.

    python benchmarks/bench_speed.py                       # CPU: 320x427, batch 2 and 8
    python benchmarks/bench_speed.py --quick               # smoke run (tiny images, 1 repeat)
    python benchmarks/bench_speed.py --device cuda         # GPU: 800x1333, 15 repeats
    python benchmarks/bench_speed.py --device cuda --loader-workers 0 2 8 --profile-dir prof

Prints a table and appends a record to ``benchmarks/results/speed.jsonl``.
"""
import argparse
import contextlib
import copy
import gc
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, count_cuda_syncs, load_config, report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R50_CONFIG = os.path.join(REPO, "configs", "bike_r50_fpn.yaml")
SMALL_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
# bikestate with the batched training-target assignment (BatchedRPN, BatchedStateROIHeads).
BATCHED_OPTS = ["MODEL.PROPOSAL_GENERATOR.NAME", "BatchedRPN",
                "MODEL.ROI_HEADS.NAME", "BatchedStateROIHeads"]
# The models of part 2, as named in the record.
SPEED_MODELS = ("bikestate", "bikestate_batched", "seed")
# Part 1 times inference this many times more often than training: a step is ~4x cheaper, and
# a 2 % difference needs many rounds on a shared machine.
INFER_REPEATS_FACTOR = 4


# ------------------------------------------------------------------------------ inputs


def load_cfg(config_file, device, image_size, opts=()):
    """A bikestate config for ``device`` whose test and training resize keep ``image_size``."""
    height, width = image_size
    return load_config(config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device,
                                     "INPUT.MIN_SIZE_TRAIN", (min(height, width),),
                                     "INPUT.MAX_SIZE_TRAIN", max(height, width),
                                     "INPUT.MIN_SIZE_TEST", min(height, width),
                                     "INPUT.MAX_SIZE_TEST", max(height, width),
                                     "WANDB.MODE", "disabled", *opts])


def synthetic_samples(num, image_size, seed=0):
    """``num`` SynthBikes pictures rendered at ``image_size`` (H, W) with their 22 parts.

    Returns a list of dicts: ``rgb`` (H, W, 3) uint8, ``boxes`` (22, 4) float32 xyxy,
    ``classes`` (22,) 0-based part ids, ``states`` (22,) int64. Boxes thinner than a pixel (none
    in practice) are dropped, since torchvision refuses them.
    """
    from bikestate.constants import PART_NAMES
    from bikestate.synth import render_bike

    height, width = image_size
    samples = []
    for i in range(num):
        img, parts = render_bike(np.random.default_rng([seed, i]), width, height)
        boxes, classes, states = [], [], []
        for k, name in enumerate(PART_NAMES):
            x, y, w, h = parts[name]["box"]
            if w >= 1 and h >= 1:
                boxes.append([x, y, x + w, y + h])
                classes.append(k)
                states.append(parts[name]["state"])
        samples.append({"rgb": img, "boxes": np.asarray(boxes, np.float32),
                        "classes": np.asarray(classes, np.int64),
                        "states": np.asarray(states, np.int64)})
    return samples


def d2_inputs(samples, device, image_format="BGR"):
    """detectron2 model inputs (what BikeStateDatasetMapper gives), already on ``device``."""
    from detectron2.structures import Boxes, Instances

    batch = []
    for s in samples:
        img = s["rgb"][..., ::-1] if image_format == "BGR" else s["rgb"]
        h, w = img.shape[:2]
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.from_numpy(s["boxes"]))
        inst.gt_classes = torch.from_numpy(s["classes"])
        inst.gt_states = torch.from_numpy(s["states"])
        batch.append({"image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
                      .to(device), "height": h, "width": w, "instances": inst.to(device)})
    return batch


def seed_inputs(samples, device):
    """The seed's ``(images, targets)``: float RGB in [0, 1], labels = category ids (1-based)."""
    images, targets = [], []
    for i, s in enumerate(samples):
        images.append(torch.from_numpy(s["rgb"]).permute(2, 0, 1).float().div(255).to(device))
        targets.append({"boxes": torch.from_numpy(s["boxes"]).to(device),
                        "labels": torch.from_numpy(s["classes"] + 1).to(device),
                        "states": torch.from_numpy(s["states"]).to(device),
                        "image_id": torch.tensor(i, device=device)})
    return images, targets


# ------------------------------------------------------------------------------ runners


def _autocast(device, amp):
    return torch.autocast("cuda", dtype=torch.float16) if amp and device.startswith("cuda") \
        else contextlib.nullcontext()


class _Snapshots:
    """Snapshot and restore of a runner's weights, optimizer and grad-scaler state."""

    def settle(self, batch, steps, amp=False):
        """Train ``steps`` steps on ``batch``, then snapshot (see the module docstring)."""
        for _ in range(steps):
            self.train_step(batch, amp)
        self.snapshot()

    def snapshot(self):
        self._snapshot = copy.deepcopy((self.model.state_dict(), self.optimizer.state_dict(),
                                        self.scaler.state_dict()))

    def restore(self):
        model, optimizer, scaler = self._snapshot
        self.model.load_state_dict(model)
        self.optimizer.load_state_dict(optimizer)
        self.scaler.load_state_dict(scaler)


class D2Runner(_Snapshots):
    """A bikestate (detectron2) model with the optimizer and step of BikeStateTrainLoop."""

    def __init__(self, cfg, seed=0):
        from detectron2.modeling import build_model
        from bikestate.engine.solver import build_optimizer

        torch.manual_seed(seed)
        self.device = cfg.MODEL.DEVICE
        self.model = build_model(cfg)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.startswith("cuda"))
        self.image_format = cfg.INPUT.FORMAT

    def inputs(self, samples):
        return d2_inputs(samples, self.device, self.image_format)

    def train_step(self, batch, amp=False):
        from detectron2.utils.events import EventStorage

        self.model.train()
        with EventStorage(0):
            self.optimizer.zero_grad(set_to_none=True)
            with _autocast(self.device, amp):
                loss_dict = self.model(batch)
                losses = sum(loss_dict.values())
            # The train loop reads every term (finite check, logging): one sync per step.
            {k: float(v.detach()) for k, v in loss_dict.items()}
            if amp:
                self.scaler.scale(losses).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                losses.backward()
                self.optimizer.step()

    @torch.no_grad()
    def infer(self, batch, amp=False):
        self.model.eval()
        with _autocast(self.device, amp):
            return self.model(batch)


class SeedRunner(_Snapshots):
    """The seed baseline with its optimizer and step (losses read for logging each step)."""

    def __init__(self, image_size, device, seed=0, norm="frozen_bn", trainable_layers=3):
        from benchmarks.seed_baseline import build_optimizer, build_seed_model

        torch.manual_seed(seed)
        self.device = device
        h, w = image_size
        self.model = build_seed_model(min_size=min(h, w), max_size=max(h, w),
                                      norm=norm,
                                      trainable_layers=trainable_layers).to(device)
        self.optimizer = build_optimizer(self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda"))

    def inputs(self, samples):
        return seed_inputs(samples, self.device)

    def train_step(self, batch, amp=False):
        images, targets = batch
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, amp):
            total, losses = self.model(images, targets)
        {k: float(v.detach()) for k, v in losses.items()}  # the seed logs every term
        if amp:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self.optimizer.step()

    @torch.no_grad()
    def infer(self, batch, amp=False):
        self.model.eval()
        with _autocast(self.device, amp):
            return self.model.predict(batch[0])


def take_over(plain, state):
    """Give D2Runner ``plain`` the weights and optimizer state of ``state`` (all but its state
    head, which ``plain`` lacks), matched by parameter name."""
    result = plain.model.load_state_dict(state.model.state_dict(), strict=False)
    if result.missing_keys or any(not k.startswith("roi_heads.state_head.")
                                  for k in result.unexpected_keys):
        raise RuntimeError(f"models differ beyond the state head: {result}")
    state_params = dict(state.model.named_parameters())
    plain.optimizer.state.clear()
    for name, param in plain.model.named_parameters():
        moments = state.optimizer.state.get(state_params[name])
        if moments:
            plain.optimizer.state[param] = {k: v.clone() if torch.is_tensor(v) else v
                                            for k, v in moments.items()}
    plain.scaler.load_state_dict(state.scaler.state_dict())
    plain.snapshot()


# ------------------------------------------------------------------------------ measuring


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def alternate(fns, repeats, warmup, device, desc="", setup=None):
    """Median seconds of each function of ``fns`` (name -> callable), run alternately.

    Order A B ... then reversed, repeat after repeat, so slow drifts of the machine hit every
    function alike. ``setup`` (name -> callable) runs untimed before each run of that
    function. Returns ``{name: median seconds}`` and ``{name: [seconds]}``.
    """
    setup = setup or {}
    from tqdm import tqdm

    names = list(fns)
    bar = tqdm(total=warmup + repeats, desc=desc or " vs ".join(names), unit="round",
               leave=False, file=sys.stderr)
    for _ in range(warmup):
        for name in names:
            if name in setup:
                setup[name]()
            fns[name]()
            _sync(device)
        bar.update()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            if name in setup:
                setup[name]()
                _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
        bar.update()
    bar.close()
    return {n: statistics.median(t) for n, t in times.items()}, times


def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def profile_step(fn, device, path=None, rows=40):
    """Profile one call of ``fn`` with torch.profiler; return the GPU busy time in ms (sum of
    kernel and copy times; None on CPU) and, with ``path``, write where the time goes there.

    The file starts with the step's wall time and, on CUDA, the time the GPU was busy: a ratio
    well below 1 means the step waits on the CPU (Python, kernel launches, host syncs), not on
    GPU compute. Then the ``rows`` most expensive operators by self time (device time on CUDA,
    CPU time otherwise).
    """
    from torch.profiler import ProfilerActivity, profile

    from bikestate.utils.io import atomic_write_text

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        _sync(device)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    lines = [f"step wall time (profiled): {1000 * wall:.1f} ms"]
    sort_by = "self_cpu_time_total"
    busy_ms = None
    if cuda:
        busy_ms = sum(e.self_device_time_total for e in events
                      if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA) / 1000
        lines.append(f"GPU busy (kernels + copies): {busy_ms:.1f} ms "
                     f"({100 * busy_ms / 1000 / wall:.0f} % of the step)")
        sort_by = "self_device_time_total"
    if path:
        lines.append(events.table(sort_by=sort_by, row_limit=rows))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write_text("\n".join(lines) + "\n", path)
    return busy_ms


def cuda_peak_memory_mib(fn):
    """``torch.cuda.max_memory_allocated`` over one call of ``fn``, in MiB."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def _process_peak_rss_child(who, cfg_args, samples, train, threads):
    """In a fresh process: build ``who``'s model, run it, return the peak resident set (MiB)."""
    torch.set_num_threads(threads)
    if who == "bikestate":
        runner = D2Runner(load_cfg(*cfg_args))
    else:
        runner = SeedRunner(cfg_args[2], "cpu")
    batch = runner.inputs(samples)
    for _ in range(2 if train else 1):
        runner.train_step(batch) if train else runner.infer(batch)
    peak = _proc_status_kib("VmHWM")
    return float("nan") if peak is None else peak / 1024


def process_peak_rss_mib(tasks):
    """Peak resident set (MiB) of a fresh process per task ``(who, cfg_args, samples, train,
    threads)``, each running only ``who``'s model (module docstring).

    Two processes run at a time: a process's peak resident set does not depend on what else
    runs, and nothing is timed meanwhile (the caller measures memory after all timings).
    """
    import multiprocessing

    # spawn, not fork: a forked child would inherit this process's memory and OpenMP threads;
    # one task per child: every measurement starts from a fresh interpreter.
    with multiprocessing.get_context("spawn").Pool(min(2, len(tasks)), maxtasksperchild=1) as pool:
        return pool.starmap(_process_peak_rss_child, tasks, chunksize=1)


# ------------------------------------------------------------------------------ parts


def _paired_pct(runs):
    return 100 * statistics.median(a / b - 1 for a, b in zip(runs["state"], runs["plain"]))


def bench_overhead(config_file, samples, args):
    """Part 1: StateROIHeads against StandardROIHeads on the same config and batch."""
    # Every image keeps its 100 best detections, even at barely trained weights: the state
    # head's worst case at inference.
    keep_all = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    cfg_state = load_cfg(config_file, args.device, args.image_size, keep_all)
    cfg_plain = load_cfg(config_file, args.device, args.image_size,
                         keep_all + ["MODEL.ROI_HEADS.NAME", "StandardROIHeads"])
    state, plain = D2Runner(cfg_state), D2Runner(cfg_plain)
    batch = state.inputs(samples[:2])
    name = os.path.splitext(os.path.basename(config_file))[0]
    state.settle(batch, args.settle_steps)
    take_over(plain, state)

    def reset(runner):
        def run():
            runner.restore()
            torch.manual_seed(0)  # same proposal sampling in both models
        return run

    setup = {"state": reset(state), "plain": reset(plain)}
    train, train_runs = alternate({"state": lambda: state.train_step(batch),
                                   "plain": lambda: plain.train_step(batch)},
                                  args.overhead_repeats, args.warmup, args.device,
                                  f"{name} train", setup)
    infer, infer_runs = alternate({"state": lambda: state.infer(batch),
                                   "plain": lambda: plain.infer(batch)},
                                  INFER_REPEATS_FACTOR * args.overhead_repeats, args.warmup,
                                  args.device, f"{name} inference", setup)
    out = {
        "config": name,
        "batch": 2,
        "train_step_state_s": train["state"], "train_step_plain_s": train["plain"],
        "infer_batch_state_s": infer["state"], "infer_batch_plain_s": infer["plain"],
        "train_overhead_pct": 100 * (train["state"] / train["plain"] - 1),
        "infer_overhead_pct": 100 * (infer["state"] / infer["plain"] - 1),
        # Median of the per-round ratios (each round runs both back to back): less sensitive
        # to load changes of a shared machine than the ratio of the medians.
        "train_overhead_pct_paired": _paired_pct(train_runs),
        "infer_overhead_pct_paired": _paired_pct(infer_runs),
        # Every timed run in seconds, in order (rounds alternate state/plain and plain/state).
        "runs_s": {f"{kind}_{who}": runs[who] for kind, runs in (("train", train_runs),
                                                                  ("infer", infer_runs))
                   for who in ("state", "plain")},
    }
    del state, plain
    gc.collect()
    return out


def bench_vs_seed(samples, args):
    """Part 2: bikestate R50-FPN (detectron2's per-image target assignment and the batched one)
    against the seed baseline, per batch size and precision."""
    cuda = args.device.startswith("cuda")
    ours = D2Runner(load_cfg(args.config, args.device, args.image_size, args.opts))
    batched = D2Runner(load_cfg(args.config, args.device, args.image_size,
                                args.opts + BATCHED_OPTS))
    seed = SeedRunner(args.image_size, args.device)
    initial = {runner: copy.deepcopy(runner.model.state_dict()) for runner in (ours, seed)}
    precisions = ["fp32"] + (["amp"] if cuda else [])
    rows = []
    rss_tasks = []  # CPU: (row, key, task) measured in fresh processes after every timing
    setup = {"bikestate": ours.restore, "bikestate_batched": batched.restore,
             "seed": seed.restore}
    for batch_size in args.batch_sizes:
        b_ours, b_seed = ours.inputs(samples[:batch_size]), seed.inputs(samples[:batch_size])
        for precision in precisions:
            amp = precision == "amp"
            what = f"batch {batch_size} {precision}"
            # Each batch size and precision settles from the same initial weights; the batched
            # model takes over the settled weights of the per-image one (same architecture).
            for runner, b in ((ours, b_ours), (seed, b_seed)):
                runner.model.load_state_dict(initial[runner])
                runner.optimizer.state.clear()
                runner.settle(b, args.settle_steps, amp)
            take_over(batched, ours)
            models = (("bikestate", ours, b_ours), ("bikestate_batched", batched, b_ours),
                      ("seed", seed, b_seed))
            train, _ = alternate({who: (lambda r=runner, b=b: r.train_step(b, amp))
                                  for who, runner, b in models},
                                 args.repeats, args.warmup, args.device, f"{what} train", setup)
            # Inference runs the same code with either target assignment: timed once.
            infer, _ = alternate({"bikestate": lambda: ours.infer(b_ours, amp),
                                  "seed": lambda: seed.infer(b_seed, amp)},
                                 args.repeats, args.warmup, args.device, f"{what} inference",
                                 setup)
            row = {"batch": batch_size, "precision": precision}
            for who, runner, b in models:
                row[f"{who}_train_img_s"] = batch_size / train[who]
                row[f"{who}_train_step_ms"] = 1000 * train[who]
                kinds = [("train", runner.train_step)]
                if who in infer:
                    row[f"{who}_infer_ms_per_img"] = 1000 * infer[who] / batch_size
                    kinds.append(("infer", runner.infer))
                for kind, step in kinds:
                    if cuda:
                        runner.restore()
                        row[f"{who}_{kind}_peak_mem_mib"] = cuda_peak_memory_mib(
                            lambda: step(b, amp))
                    else:
                        opts = args.opts + (BATCHED_OPTS if who == "bikestate_batched" else [])
                        rss_tasks.append((row, f"{who}_{kind}_peak_mem_mib", (
                            "seed" if who == "seed" else "bikestate",
                            (args.config, "cpu", args.image_size, opts),
                            samples[:batch_size], kind == "train", torch.get_num_threads())))
                # Where the step waits: GPU busy time and host synchronizations (CUDA only);
                # with --profile-dir, the profiled step's table.
                train_once = lambda: runner.train_step(b, amp)  # noqa: E731
                path = None if not args.profile_dir else os.path.join(
                    args.profile_dir, f"train_{who}_b{batch_size}_{precision}.txt")
                busy_ms = syncs = None
                if cuda or path:
                    runner.restore()
                    busy_ms = profile_step(train_once, args.device, path)
                if cuda:
                    runner.restore()
                    syncs = count_cuda_syncs(train_once)[1]
                row[f"{who}_train_gpu_busy_ms"] = busy_ms
                row[f"{who}_train_syncs_per_step"] = syncs
            row["train_speedup"] = row["bikestate_train_img_s"] / row["seed_train_img_s"]
            row["batched_train_speedup"] = (row["bikestate_batched_train_img_s"]
                                            / row["seed_train_img_s"])
            row["batched_vs_per_image"] = (row["bikestate_batched_train_img_s"]
                                           / row["bikestate_train_img_s"])
            row["infer_speedup"] = row["seed_infer_ms_per_img"] / row["bikestate_infer_ms_per_img"]
            rows.append(row)
    del ours, batched, seed
    gc.collect()
    if rss_tasks:
        peaks = process_peak_rss_mib([task for _, _, task in rss_tasks])
        for (row, key, _), mib in zip(rss_tasks, peaks):
            row[key] = mib
    return rows


def bench_loader(args):
    """Part 3: images/s of bikestate's training loader with 0 and 2 workers."""
    from bikestate.data.cache import prepare_synthbikes
    from bikestate.data.catalog import register_bike_instances, unregister_bike_dataset
    from bikestate.engine import BikeStateTrainer

    h, w = args.loader_source_size
    coco_json, image_root = prepare_synthbikes(args.cache_dir, "speed_loader", args.loader_images,
                                               seed=11, image_size=(w, h))
    name = "bench_speed_loader"
    register_bike_instances(name, coco_json, image_root, replace=True)
    rows = []
    for workers in args.loader_workers:
        cfg = load_cfg(args.config, args.device, args.image_size,
                       ["DATASETS.TRAIN", (name,), "DATASETS.TEST", (),
                        "DATALOADER.NUM_WORKERS", workers, "SOLVER.IMS_PER_BATCH", 2])
        loader = BikeStateTrainer.build_train_loader(cfg)
        it = iter(loader)
        next(it)  # worker start-up and first batch
        images = 0
        start = time.perf_counter()
        for _ in range(args.loader_batches):
            images += len(next(it))
        seconds = time.perf_counter() - start
        rows.append({"workers": workers, "img_s": images / seconds, "images": images,
                     "source_size": [w, h]})
        del it, loader
    unregister_bike_dataset(name)
    return rows


# ------------------------------------------------------------------------------ main


def _fmt(v, digits=1):
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def print_tables(fig):
    from tabulate import tabulate

    if fig.get("overhead"):
        print("\nState branch overhead (batch 2): StateROIHeads vs StandardROIHeads")
        print(tabulate([[r["config"], _fmt(1000 * r["train_step_state_s"]),
                         _fmt(1000 * r["train_step_plain_s"]), _fmt(r["train_overhead_pct"], 2),
                         _fmt(1000 * r["infer_batch_state_s"]),
                         _fmt(1000 * r["infer_batch_plain_s"]), _fmt(r["infer_overhead_pct"], 2)]
                        for r in fig["overhead"]],
                       headers=["config", "train ms", "plain ms", "train +%", "infer ms",
                                "plain ms", "infer +%"]))
    if fig.get("vs_seed"):
        print("\nbikestate R50-FPN vs seed baseline (torchvision)")
        print(tabulate([[r["batch"], r["precision"], _fmt(r["bikestate_train_img_s"], 2),
                         _fmt(r["seed_train_img_s"], 2), _fmt(r["train_speedup"], 2),
                         _fmt(r["bikestate_infer_ms_per_img"]), _fmt(r["seed_infer_ms_per_img"]),
                         _fmt(r["bikestate_train_peak_mem_mib"], 0),
                         _fmt(r["seed_train_peak_mem_mib"], 0)] for r in fig["vs_seed"]],
                       headers=["batch", "prec", "ours img/s", "seed img/s", "x", "ours ms/img",
                                "seed ms/img", "ours MiB", "seed MiB"]))
        print("\nTraining step per model (GPU busy and host syncs: CUDA only)")
        print(tabulate([[r["batch"], r["precision"], who, _fmt(r[f"{who}_train_step_ms"]),
                         _fmt(r[f"{who}_train_img_s"], 2), _fmt(r[f"{who}_train_gpu_busy_ms"]),
                         _fmt(r[f"{who}_train_syncs_per_step"])]
                        for r in fig["vs_seed"] for who in SPEED_MODELS],
                       headers=["batch", "prec", "model", "step ms", "img/s", "GPU busy ms",
                                "syncs"]))
    if fig.get("loader"):
        print("\nTraining data loader (BikeStateDatasetMapper)")
        print(tabulate([[r["workers"], _fmt(r["img_s"])] for r in fig["loader"]],
                       headers=["workers", "img/s"]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="input size (default: 320 427 on CPU, 800 1333 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (CPU 5, CUDA 15)")
    parser.add_argument("--overhead-repeats", type=int, default=None,
                        help="timed training runs of part 1, whose differences are small "
                             "(default 3x --repeats; inference 4x this)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs (CPU 1, CUDA 3)")
    parser.add_argument("--settle-steps", type=int, default=None,
                        help="training steps before the weights are snapshotted (CPU 4, CUDA 10)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--config", default=R50_CONFIG, help="bikestate config of part 2 and 3")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config options for the part-2 bikestate model")
    parser.add_argument("--overhead-configs", nargs="+", default=[SMALL_CONFIG, R50_CONFIG])
    parser.add_argument("--parts", nargs="+", default=["overhead", "seed", "loader"],
                        choices=["overhead", "seed", "loader"])
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--loader-images", type=int, default=48)
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--loader-source-size", type=int, nargs=2, metavar=("H", "W"),
                        default=None, help="size of the JPEGs (default 480 640; CUDA 800 1067)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 128x160 images, batch 2, 1 repeat, no warm-up")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(),
                                                             "bikestate_bench_cache"))
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--profile-dir", default=None,
                        help="also profile one training step of each part-2 model per batch "
                             "size and precision (torch.profiler tables written here)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is available")
    if args.quick:
        args.image_size = args.image_size or [128, 160]
        args.repeats = args.repeats or 1
        args.warmup = 0 if args.warmup is None else args.warmup
        args.settle_steps = 1 if args.settle_steps is None else args.settle_steps
        args.batch_sizes = [2]
        args.loader_images = min(args.loader_images, 8)
        args.loader_batches = min(args.loader_batches, 2)
        args.loader_source_size = args.loader_source_size or [120, 160]
    args.image_size = args.image_size or ([800, 1333] if cuda else [320, 427])
    args.repeats = args.repeats or (15 if cuda else 5)
    args.overhead_repeats = args.overhead_repeats or 3 * args.repeats
    args.warmup = (3 if cuda else 1) if args.warmup is None else args.warmup
    args.settle_steps = (10 if cuda else 4) if args.settle_steps is None else args.settle_steps
    args.loader_source_size = args.loader_source_size or ([800, 1067] if cuda else [480, 640])
    if len(args.opts) % 2:
        parser.error("--opts takes KEY VALUE pairs")
    if min(args.repeats, args.overhead_repeats, *args.batch_sizes) < 1 \
            or min(args.warmup, args.settle_steps) < 0:
        parser.error("--repeats, --overhead-repeats and --batch-sizes must be >= 1, "
                     "--warmup and --settle-steps >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    samples = synthetic_samples(max(args.batch_sizes + [2]), args.image_size)
    figures = {
        "device": args.device,
        "image_size": list(args.image_size),
        "repeats": args.repeats,
        "overhead_repeats": args.overhead_repeats,
        "opts": list(args.opts),
        "warmup": args.warmup,
        "settle_steps": args.settle_steps,
        "batch_sizes": list(args.batch_sizes),
        "threads": torch.get_num_threads(),
        "quick": bool(args.quick),
        "load_average_1min": os.getloadavg()[0],
        "memory_measure": ("cuda_max_memory_allocated" if args.device.startswith("cuda")
                           else "cpu_process_peak_rss"),
        "seed_setup": "torchvision fasterrcnn_resnet50_fpn, FrozenBN, stages 3-5 trainable",
        "bikestate_config": os.path.relpath(args.config, REPO),
    }
    if "overhead" in args.parts:
        figures["overhead"] = [bench_overhead(c, samples, args) for c in args.overhead_configs]
    if "seed" in args.parts:
        figures["vs_seed"] = bench_vs_seed(samples, args)
    if "loader" in args.parts:
        figures["loader"] = bench_loader(args)
    figures["wall_s"] = time.perf_counter() - start
    return report("speed", figures, print_tables, args)


if __name__ == "__main__":
    main()
