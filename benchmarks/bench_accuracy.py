"""Accuracy at equal budget: bikestate against the seed pipeline, both trained from scratch.

Same SynthBikes training and validation sets (generated once into ``--cache-dir``, converted to
COCO with states, registered with ``register_bike_instances``), same input size, same number of
training images seen (``epochs x train images``, batch 2 everywhere), every model from random
initialisation (nothing is downloadable here):

* ``bikestate_small``: ``configs/bike_small_cpu.yaml`` (ResNet-18 GN FPN, its AdamW 1e-3 +
  warm-up + cosine schedule), one evaluation at the end;
* ``bikestate_r50``: ``configs/bike_r50_fpn.yaml`` with the from-scratch recipe of detectron2's
  ``scratch_*_gn`` configs (``MODEL.WEIGHTS ""``, GroupNorm in ResNet and FPN, all stages
  trainable): FrozenBatchNorm on random weights does not train. Seed hyper-parameters (AdamW
  1e-4 / 1e-4, ReduceLROnPlateau 0.5 / 3 on the validation loss, evaluated every epoch);
* ``seed_r50``: :mod:`benchmarks.seed_baseline` (torchvision ``fasterrcnn_resnet50_fpn`` with
  ``weights=None``: trainable BatchNorm, all stages trainable, as torchvision builds it from
  scratch) with the seed's loop (:func:`benchmarks.seed_baseline.fit`).

bikestate is trained in this process through ``BikeStateTrainer`` exactly as
``tools/train_net.py`` does (its data loader, augmentations, hooks; W&B off) and scored by the
trainer's own final evaluation (``BikeStateEvaluator`` on the validation set, final weights).
The seed model's final weights are scored by the same evaluator on the same registered set
(:func:`benchmarks.seed_baseline.evaluate_with_bikestate`). Each pipeline keeps its own data
handling: bikestate's training augmentations (horizontal flip, colour jitter) are part of what
is compared; the seed has none (ToTensor only). Warm-up iterations of the bikestate
configs are capped at 5% of the run (a 500-iteration warm-up would eat short budgets).

Reported per model: ``bbox/AP``, ``bbox/AP50``, ``bbox_present/AP``, ``state/accuracy``,
``state/macro_f1``, ``verify/hallucination_rate`` (plus ``bbox_state/AP50``,
``verify/not_found_rate``: an untrained detector that finds nothing "hallucinates" nothing),
``wall_s`` (training, its periodic evaluations and the final evaluation) and iterations.
Undefined metrics (NaN, e.g. no matched detection) are written as null.

Settings (``--setting``):

* ``tiny``: 4 + 2 images at 128x96, 1 epoch: a smoke test (about a minute);
* ``cpu``: 128 + 32 images at 256x192, 3 epochs (384 images seen, 192 steps per model):
  32 minutes on the project's idle 2-core CPU (measured 2026-11-26: small 77 s, R50 937 s,
  seed 902 s, plus data generation; the two R50 models take ~4.7 s per step);
* ``gpu``: 500 + 100 images at 640x480, 12 epochs (6,000 images seen, 3,000 steps per model),
  AMP on both sides: about 10 minutes on one H100.

Every number can be overridden (``--train-images``, ``--val-images``, ``--epochs``,
``--image-size``, ``--models``). Appends a record to ``benchmarks/results/accuracy.jsonl``.

    python benchmarks/bench_accuracy.py --setting cpu
"""
import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, append_record  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    # image_size is (width, height) of the generated pictures; the input size is the same.
    "tiny": {"train_images": 4, "val_images": 2, "image_size": (128, 96), "epochs": 1,
             "workers": 0},
    "cpu": {"train_images": 128, "val_images": 32, "image_size": (256, 192), "epochs": 3,
            "workers": 2},
    "gpu": {"train_images": 500, "val_images": 100, "image_size": (640, 480), "epochs": 12,
            "workers": 2},
}
MODELS = ("bikestate_small", "bikestate_r50", "seed_r50")
CONFIGS = {"bikestate_small": "configs/bike_small_cpu.yaml",
           "bikestate_r50": "configs/bike_r50_fpn.yaml"}
# detectron2's from-scratch recipe (configs/Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml).
R50_SCRATCH_OPTS = ["MODEL.WEIGHTS", "", "MODEL.BACKBONE.FREEZE_AT", 0,
                    "MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.STRIDE_IN_1X1", False,
                    "MODEL.FPN.NORM", "GN"]
METRICS = ("bbox/AP", "bbox/AP50", "bbox_present/AP", "state/accuracy", "state/macro_f1",
           "verify/hallucination_rate", "bbox_state/AP50", "verify/not_found_rate",
           "state/num_pairs")
TRAIN_NAME, VAL_NAME = "bench_accuracy_train", "bench_accuracy_val"

logger = logging.getLogger("bench_accuracy")


# ------------------------------------------------------------------------------ data


def prepare_split(cache_dir, split, num_images, seed, image_size):
    """SynthBikes split generated once into the cache; returns (coco json, images folder)."""
    from bikestate.data import synth
    from bikestate.data.coco import convert_to_coco
    from bikestate.utils.io import atomic_write_text

    w, h = image_size
    version = getattr(synth, "SYNTH_VERSION", 0)
    folder = os.path.join(cache_dir, f"acc_{split}_n{num_images}_s{seed}_{w}x{h}_v{version}")
    coco_json = os.path.join(folder, "coco.json")
    images = os.path.join(folder, "images")
    if not os.path.isfile(coco_json):
        ann = synth.generate_synthbikes(folder, num_images, seed, image_size=(w, h),
                                        show_progress=True)
        convert_to_coco(ann, images, coco_json, verbose=False)
        atomic_write_text("complete\n", os.path.join(folder, "DONE"))
    return coco_json, images


def register_data(cache_dir, setting):
    from bikestate.data.datasets import register_bike_instances

    size = tuple(setting["image_size"])
    train = prepare_split(cache_dir, "train", setting["train_images"], 101, size)
    val = prepare_split(cache_dir, "val", setting["val_images"], 102, size)
    register_bike_instances(TRAIN_NAME, *train, replace=True)
    register_bike_instances(VAL_NAME, *val, replace=True)
    return {"train": train, "val": val}


# ------------------------------------------------------------------------------ models


def _flat(results):
    """Nested evaluator results -> the reported metrics, NaN as None."""
    out = {}
    for key in METRICS:
        task, name = key.split("/")
        v = results.get(task, {}).get(name)
        out[key] = None if v is None or not math.isfinite(float(v)) else float(v)
    return out


def bikestate_cfg(model, setting, args, output_dir):
    from detectron2.config import get_cfg

    from bikestate.config import add_bikestate_config

    w, h = setting["image_size"]
    iters_per_epoch = math.ceil(setting["train_images"] / 2)
    max_iter = setting["epochs"] * iters_per_epoch
    cfg = get_cfg()
    add_bikestate_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, CONFIGS[model]))
    opts = [
        "MODEL.DEVICE", args.device,
        "DATASETS.TRAIN", (TRAIN_NAME,), "DATASETS.TEST", (VAL_NAME,),
        "INPUT.MIN_SIZE_TRAIN", (min(w, h),), "INPUT.MAX_SIZE_TRAIN", max(w, h),
        "INPUT.MIN_SIZE_TEST", min(w, h), "INPUT.MAX_SIZE_TEST", max(w, h),
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.GRAD_ACCUM_STEPS", 1,
        "SOLVER.MAX_EPOCHS", 0, "SOLVER.MAX_ITER", max_iter,
        "SOLVER.WARMUP_ITERS", min(cfg.SOLVER.WARMUP_ITERS, max(1, max_iter // 20)),
        "SOLVER.CHECKPOINT_PERIOD", max_iter + 1,
        "DATALOADER.NUM_WORKERS", setting["workers"],
        "WANDB.MODE", "disabled", "OUTPUT_DIR", output_dir, "SEED", 42,
    ]
    if model == "bikestate_r50":
        # The seed's per-epoch validation loss drives the plateau schedule.
        opts += R50_SCRATCH_OPTS + ["TEST.EVAL_PERIOD", iters_per_epoch]
    else:
        opts += ["MODEL.WEIGHTS", "", "TEST.EVAL_PERIOD", max_iter]
    cfg.merge_from_list(opts)
    return cfg


def run_bikestate(model, setting, args, work_dir):
    from detectron2.utils.env import seed_all_rng

    from bikestate.engine import BikeStateTrainer, prepare_training_config

    cfg = bikestate_cfg(model, setting, args, os.path.join(work_dir, model))
    for notice in prepare_training_config(cfg):
        logger.info(notice)
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # what tools/train_net.py's default_setup does
    start = time.perf_counter()
    trainer = BikeStateTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    wall = time.perf_counter() - start
    out = _flat(results or {})
    out.update({"wall_s": wall, "iterations": cfg.SOLVER.MAX_ITER,
                "images_seen": cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH,
                "config": CONFIGS[model], "amp": bool(cfg.SOLVER.AMP.ENABLED)})
    del trainer
    return out


def run_seed(setting, args, data, work_dir):
    from benchmarks import seed_baseline as S

    w, h = setting["image_size"]
    S.seed_everything(42)
    model = S.build_seed_model(num_parts=22, weights=args.seed_weights, min_size=min(w, h),
                               max_size=max(w, h)).to(args.device)
    train_loader, val_loader = S.build_data_loaders(
        *data["train"], *data["val"], batch_size=2, num_workers=setting["workers"],
        device=args.device)
    start = time.perf_counter()
    history = S.fit(model, train_loader, val_loader, setting["epochs"], args.device,
                    output_dir=os.path.join(work_dir, "seed_r50"))
    amp = args.device.startswith("cuda")
    results = S.evaluate_with_bikestate(model, val_loader, VAL_NAME, args.device,
                                        output_dir=os.path.join(work_dir, "seed_r50", "eval"),
                                        amp=amp)
    wall = time.perf_counter() - start
    out = _flat(results)
    out.update({"wall_s": wall, "iterations": setting["epochs"] * len(train_loader),
                "images_seen": setting["epochs"] * len(train_loader.dataset),
                "config": "benchmarks/seed_baseline.py", "amp": amp,
                "final_avg_val_loss": history[-1]["avg_val_loss"] if history else None})
    return out


# ------------------------------------------------------------------------------ main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--train-images", type=int)
    parser.add_argument("--val-images", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"))
    parser.add_argument("--workers", type=int, help="data loader workers (both pipelines)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is faster on a CPU shared with other jobs)")
    parser.add_argument("--seed-weights", default=None, choices=[None, "DEFAULT", "auto"],
                        help="seed baseline initial weights (default: from scratch)")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(),
                                                             "bikestate_bench_cache"))
    parser.add_argument("--work-dir", default=None,
                        help="checkpoints and evaluation files (default: a temporary folder)")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is available")
    setting = dict(SETTINGS[args.setting])
    for key in ("train_images", "val_images", "epochs", "image_size", "workers"):
        value = getattr(args, key)
        if value is not None:
            setting[key] = tuple(value) if key == "image_size" else value
    if setting["train_images"] < 2 or setting["train_images"] % 2:
        parser.error("--train-images must be even (batches of 2 for every model)")
    if setting["val_images"] < 1 or setting["epochs"] < 1:
        parser.error("--val-images and --epochs must be >= 1")
    if min(setting["image_size"]) < 48:
        parser.error("--image-size must be at least 64 x 48")
    return args, setting


def main(argv=None):
    args, setting = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import bikestate  # noqa: F401  registers StateROIHeads, the evaluator

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_accuracy_")
    start = time.perf_counter()
    data = register_data(args.cache_dir, setting)
    models = {}
    for name in args.models:
        logger.info("training %s (%s setting)", name, args.setting)
        if name == "seed_r50":
            models[name] = run_seed(setting, args, data, work_dir)
        else:
            models[name] = run_bikestate(name, setting, args, work_dir)
        logger.info("%s: %s", name, json.dumps(models[name]))
    figures = {
        "setting": args.setting,
        "device": args.device,
        "image_size": list(setting["image_size"]),
        "train_images": setting["train_images"],
        "val_images": setting["val_images"],
        "epochs": setting["epochs"],
        "images_seen": setting["epochs"] * setting["train_images"],
        "workers": setting["workers"],
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "models": models,
        "total_wall_s": time.perf_counter() - start,
    }
    print_table(figures)
    if not args.no_record:
        append_record("accuracy", figures, results_dir=args.results_dir)
        print(f"\nrecord appended to {os.path.join(args.results_dir, 'accuracy.jsonl')}")
    return figures


def print_table(figures):
    from tabulate import tabulate

    keys = list(METRICS) + ["wall_s"]
    rows = [[name] + ["-" if m.get(k) is None else f"{m[k]:.3f}" for k in keys]
            for name, m in figures["models"].items()]
    print(f"\nAccuracy, {figures['setting']} setting: {figures['images_seen']} images seen, "
          f"{figures['image_size'][0]}x{figures['image_size'][1]}, {figures['device']}")
    print(tabulate(rows, headers=["model"] + keys))


if __name__ == "__main__":
    main()
