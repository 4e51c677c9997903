"""Cost of the state branch: StateROIHeads vs the same model with plain StandardROIHeads.

Targets (issue 4): the state branch costs at most 3% of a training step and at most 2% of
inference time. Both models are built from the same config (the baseline with
``MODEL.ROI_HEADS.NAME StandardROIHeads``) and hold the same weights for every shared part
(the baseline loads the state model's state dict non-strictly); they run in the same process
on the same inputs (random images with 22 random parts each) with the same random seed before
every step, alternating A/B so that machine load hits both alike. Each figure is the median of
``--repeats`` steps after warm-up.

Two estimates of the overhead are recorded:

* ``*_overhead_pct``: (median state model - median baseline) / median baseline, the A/B
  difference; on a loaded machine its noise can exceed the effect itself (then more
  ``--repeats`` help);
* ``*_head_pct``: the state branch's own work measured directly (the state head and its loss,
  forward and backward, on as many rows as the model gives it; at inference the head on the
  kept detections) relative to the baseline step: a low-noise check of the same quantity.

    python benchmarks/bench_state_branch.py [--config configs/bike_small_cpu.yaml]
        [--size 320] [--repeats 15] [--threads 2] [--batch 2] [--opts KEY VALUE ...]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import append_record, load_config, median_time  # noqa: E402

TRAIN_TARGET_PCT = 3.0
INFER_TARGET_PCT = 2.0


def make_cfg(config_file, size, roi_heads_name, opts=()):
    return load_config(config_file, [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.TIMM.PRETRAINED", False,
        "INPUT.MIN_SIZE_TEST", size, "MODEL.ROI_HEADS.NAME", roi_heads_name,
        # Every image keeps its 100 best detections (TEST.DETECTIONS_PER_IMAGE), even with
        # random weights: the state head's worst case at inference.
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
        *opts,
    ])


def make_inputs(batch, height, width, seed):
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch):
        xy = torch.rand(22, 2, generator=g) * torch.tensor([width * 0.8, height * 0.8])
        wh = 8 + torch.rand(22, 2, generator=g) * torch.tensor([width * 0.2, height * 0.2])
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.arange(22)
        inst.gt_states = torch.randint(0, 4, (22,), generator=g)
        inputs.append({"image": torch.randint(0, 256, (3, height, width), generator=g).float(),
                       "instances": inst, "height": height, "width": width})
    return inputs


def train_step_fn(model, optimizer, inputs, seed):
    from detectron2.utils.events import EventStorage

    storage = EventStorage()

    def step():
        torch.manual_seed(seed)  # same proposal sampling and dropout in both models
        with storage:
            losses = model(inputs)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    return step


def infer_fn(model, image):
    def run():
        with torch.no_grad():
            model([image])

    return run


def state_head_fn(model, num_rows, train):
    """The state branch's own work on ``num_rows`` rows of box features."""
    from bikestate.modeling import state_loss

    head = model.roi_heads.state_head
    dim = head.fc_hidden.in_features - (head.class_embed.embedding_dim
                                        if head.class_conditioned else 0)
    features = torch.randn(num_rows, dim, requires_grad=train)
    classes = torch.randint(0, 22, (num_rows,))
    states = torch.randint(0, 4, (num_rows,))

    def run():
        if train:
            loss = state_loss(head(features, classes), states) * 0.5
            loss.backward()
        else:
            with torch.no_grad():
                head(features, classes).softmax(dim=1).argmax(dim=1)

    return run


def bench(config_file, size, repeats, batch, seed=0, opts=()):
    from detectron2.modeling import build_model

    torch.manual_seed(seed)
    state_model = build_model(make_cfg(config_file, size, "StateROIHeads", opts))
    base_model = build_model(make_cfg(config_file, size, "StandardROIHeads", opts))
    missing = base_model.load_state_dict(state_model.state_dict(), strict=False)
    assert not missing.missing_keys, missing.missing_keys  # every shared tensor is equal
    height, width = size, int(round(size * 4 / 3))
    inputs = make_inputs(batch, height, width, seed)
    image = {k: v for k, v in inputs[0].items() if k != "instances"}

    models = {"state": state_model, "base": base_model}
    train = {}
    for name, model in models.items():
        model.train()
        # Same optimizer for both; lr 0 keeps the weights (and so the work) identical per step.
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        train[name] = train_step_fn(model, optimizer, inputs, seed)
    times = {f"train_{n}": [] for n in models}
    times.update({f"infer_{n}": [] for n in models})
    for fn in train.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name in models:  # alternate A/B
            times[f"train_{name}"].append(median_time(train[name], repeats=1, warmup=0))
    for model in models.values():
        model.eval()
    infer = {n: infer_fn(m, image) for n, m in models.items()}
    for fn in infer.values():
        fn()
    for _ in range(repeats):
        for name in models:
            times[f"infer_{name}"].append(median_time(infer[name], repeats=1, warmup=0))
    med = {k: statistics.median(v) for k, v in times.items()}

    # Rows the state head sees: foreground proposals (training), kept detections (inference).
    rows_train = int(batch * state_model.roi_heads.batch_size_per_image
                     * state_model.roi_heads.positive_fraction)
    with torch.no_grad():
        rows_infer = len(state_model([image])[0]["instances"])
    state_model.train()
    head_train = median_time(state_head_fn(state_model, rows_train, True), repeats * 3, 2)
    state_model.eval()
    head_infer = median_time(state_head_fn(state_model, max(rows_infer, 1), False),
                             repeats * 3, 2)

    def pct(a, b):
        return round(100.0 * (a - b) / b, 2)

    return {
        "config": os.path.basename(config_file),
        "input": f"{width}x{height}",
        "batch": batch,
        "repeats": repeats,
        "train_standard_ms": round(1000 * med["train_base"], 1),
        "train_state_ms": round(1000 * med["train_state"], 1),
        "train_overhead_pct": pct(med["train_state"], med["train_base"]),
        "train_head_pct": round(100.0 * head_train / med["train_base"], 2),
        "infer_standard_ms": round(1000 * med["infer_base"], 1),
        "infer_state_ms": round(1000 * med["infer_state"], 1),
        "infer_overhead_pct": pct(med["infer_state"], med["infer_base"]),
        "infer_head_pct": round(100.0 * head_infer / med["infer_base"], 2),
        "head_rows_train": rows_train,
        "head_rows_infer": rows_infer,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--config", action="append",
                        help="config file(s); default configs/bike_small_cpu.yaml")
    parser.add_argument("--size", type=int, action="append",
                        help="shorter image side per config (default 320)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--opts", nargs="*", default=[],
                        help="config overrides for every config, e.g. MODEL.RESNETS.NORM GN "
                        "(random FrozenBN ResNet-50 weights overflow: no detections to time)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = args.config or [os.path.join(repo, "configs", "bike_small_cpu.yaml")]
    sizes = args.size or [320] * len(configs)
    if len(sizes) != len(configs):
        parser.error("give one --size per --config")

    runs = []
    for config_file, size in zip(configs, sizes):
        start = time.perf_counter()
        run = bench(config_file, size, args.repeats, args.batch, opts=args.opts)
        if args.opts:
            run["opts"] = " ".join(str(o) for o in args.opts)
        run["wall_s"] = round(time.perf_counter() - start, 1)
        runs.append(run)
        print(" ".join(f"{k}={v}" for k, v in run.items()), flush=True)
    figures = {
        "runs": runs,
        "threads": args.threads,
        "train_target_pct": TRAIN_TARGET_PCT,
        "infer_target_pct": INFER_TARGET_PCT,
        "train_head_within_target": all(r["train_head_pct"] <= TRAIN_TARGET_PCT for r in runs),
        "infer_head_within_target": all(r["infer_head_pct"] <= INFER_TARGET_PCT for r in runs),
        "train_ab_within_target": all(r["train_overhead_pct"] <= TRAIN_TARGET_PCT for r in runs),
        "infer_ab_within_target": all(r["infer_overhead_pct"] <= INFER_TARGET_PCT for r in runs),
    }
    if not args.no_record:
        append_record("state_branch", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
