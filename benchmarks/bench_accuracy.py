"""Accuracy at equal budget: bikestate against the seed pipeline, both trained from scratch.

Same SynthBikes training and validation sets (generated once into ``--cache-dir``, converted to
COCO with states, registered with ``register_bike_instances``), same input size (every pipeline
resizes to the generated size, training and test: no multi-scale training), same number of
training images (``epochs x train images``, batch 2 everywhere), every model from random
initialisation (nothing is downloadable here):

* ``bikestate_small``: ``configs/bike_small_cpu.yaml`` (ResNet-18 GN FPN, its AdamW 1e-3 +
  warm-up + cosine schedule), one evaluation at the end;
* ``bikestate_r50``: ``configs/bike_r50_fpn.yaml`` with the from-scratch recipe of detectron2's
  ``scratch_*_gn`` configs (``MODEL.WEIGHTS ""``, GroupNorm in ResNet and FPN, all stages
  trainable): FrozenBatchNorm on random weights does not train. Seed hyper-parameters (AdamW
  1e-4 / 1e-4, ReduceLROnPlateau 0.5 / 3 on the validation loss, evaluated every epoch) after a
  warm-up;
* ``seed_r50``: :mod:`benchmarks.seed_baseline` (torchvision ``fasterrcnn_resnet50_fpn`` with
  ``weights=None``, all stages trainable) with the seed's loop
  (:func:`benchmarks.seed_baseline.fit`: no warm-up). Its normalisation is ``--seed-norm``:
  ``gn`` (default) is GroupNorm (32 groups) in the ResNet and the FPN, the same recipe as
  ``bikestate_r50``, so the default run compares GroupNorm with GroupNorm; ``bn`` is
  torchvision's own from-scratch choice, trainable BatchNorm (noisy statistics at batch 2).
  (``--opts MODEL.RESNETS.NORM BN MODEL.FPN.NORM ""`` is the other way to equal norms: bikestate
  with BatchNorm.)

What still differs between the pipelines, recorded with the figures:

* Training augmentation. bikestate's training mapper adds a random horizontal flip
  (``INPUT.RANDOM_FLIP``) and brightness / contrast / saturation jitter of +-20 %
  (``INPUT.COLOR_JITTER``); the seed has none (``ToTensor``, then torchvision's resize).
  ``--no-augment`` turns bikestate's flip and jitter off, so both see the same pictures (the
  resize to the input size only). Recorded: ``augment`` and, per model, ``augmentation`` (the
  random augmentations its training loader applies, from the built config).
* Warm-up: the bikestate configs warm the learning rate up, capped here at 5 % of the run (a
  500-iteration warm-up would eat short budgets); the seed has none. Recorded per model:
  ``warmup_iters``.
* Normalisation, recorded per model as ``norm_layers``: the classes of the normalisation layers
  of the built backbone (ResNet + FPN), e.g. ``["GroupNorm"]``; ``seed_norm`` is the option.

Images seen are counted, not computed: bikestate's training loop gets its batches through a
counting wrapper of its data loader (a hook registered by this script), the seed's loop counts
the images of each batch it trains on. Per model ``images_seen`` is that count and
``images_planned`` the budget (``SOLVER.MAX_ITER x IMS_PER_BATCH``, ``epochs x train
images``); the record's ``images_seen`` is the count all models agree on, null (and said in the
table) when they do not.

bikestate is trained in this process through ``BikeStateTrainer`` exactly as
``tools/train_net.py`` does (its data loader, augmentations, hooks; W&B off) and scored by the
trainer's own final evaluation (``BikeStateEvaluator`` on the validation set, final weights).
The seed model's final weights are scored by the same evaluator on the same registered set
(:func:`benchmarks.seed_baseline.evaluate_with_bikestate`).

Reported per model: ``bbox/AP``, ``bbox/AP50``, ``bbox_present/AP``, the verdicts'
threshold-free figures ``verify/auroc_present``, ``verify/halluc_at_95r``, ``verify/damage_ap``,
their ``verify/macro_f1`` beside the majority baseline, the operating-point rates in pairs
(``present_recall`` with ``hallucination_rate`` and ``not_found_rate``, damage precision with
recall), ``bbox_state/AP50``, ``state/macro_f1``, ``wall_s`` (training, its periodic
evaluations and the final evaluation) and iterations.
The state branch is also scored alone, apart from what the detector finds: ``state_gt/accuracy``
and ``state_gt/macro_f1`` classify every ground-truth box of the validation set with the final
weights (``state_gt_predicted_shares``: how often each state is predicted; ``state_gt_auc``: per
state, the one-vs-rest AUC of its probability, which shows a head that ranks states well but
whose argmax never leaves the majority state; not in ``wall_s``).
Undefined metrics (NaN, e.g. no matched detection) are written as null.

Settings (``--setting``):

* ``tiny``: 4 + 2 images at 128x96, 1 epoch: a smoke test (about a minute);
* ``cpu``: 128 + 32 images at 256x192, 2 epochs (256 images seen, 128 steps per model), sized
  for 30 minutes on the project's idle 2-core CPU, where the two R50 models take ~4.7 s per
  step (3 epochs took 32 minutes on 2026-11-26: small 77 s, R50 937 s, seed 902 s);
* ``gpu``: 400 + 80 images at 640x480, 3 epochs (1,200 images seen, 600 steps per model),
  AMP on both sides, 8 loader workers (4 left the small model waiting on data): about 4
  minutes on one H100 (2026-11-26: small 36 s, R50 108 s with its per-epoch evaluations, the
  seed's 3 epochs 45 s, then its final evaluation; allow 5 minutes).

Every number can be overridden (``--train-images``, ``--val-images``, ``--epochs``,
``--image-size``, ``--models``); ``--opts KEY VALUE ...`` changes both bikestate configs for an
ablation (recorded with the figures). ``--seed-norm`` and ``--no-augment`` are part of what a
record measured (:func:`benchmarks.make_results.scope`): a run with other choices does not hide
the default one. Appends a record to ``benchmarks/results/accuracy.jsonl``.

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
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, load_config, report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    # image_size is (width, height) of the generated pictures; the input size is the same.
    "tiny": {"train_images": 4, "val_images": 2, "image_size": (128, 96), "epochs": 1,
             "workers": 0},
    "cpu": {"train_images": 128, "val_images": 32, "image_size": (256, 192), "epochs": 2,
            "workers": 2},
    # Sized for the 15 minutes of device time a session may be lent (shared with bench_speed).
    "gpu": {"train_images": 400, "val_images": 80, "image_size": (640, 480), "epochs": 3,
            "workers": 8},
}
MODELS = ("bikestate_small", "bikestate_r50", "seed_r50")
CONFIGS = {"bikestate_small": "configs/bike_small_cpu.yaml",
           "bikestate_r50": "configs/bike_r50_fpn.yaml"}
# detectron2's from-scratch recipe (configs/Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml).
R50_SCRATCH_OPTS = ["MODEL.WEIGHTS", "", "MODEL.BACKBONE.FREEZE_AT", 0,
                    "MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.STRIDE_IN_1X1", False,
                    "MODEL.FPN.NORM", "GN"]
METRICS = ("bbox/AP", "bbox/AP50", "bbox_present/AP", "verify/auroc_present",
           "verify/halluc_at_95r", "verify/damage_ap", "verify/macro_f1",
           "verify/macro_f1_majority", "verify/present_recall", "verify/hallucination_rate",
           "verify/not_found_rate", "verify/damage_precision", "verify/damage_recall",
           "bbox_state/AP50", "state/macro_f1")
TRAIN_NAME, VAL_NAME = "bench_accuracy_train", "bench_accuracy_val"

logger = logging.getLogger("bench_accuracy")


# ------------------------------------------------------------------------------ data


def register_data(cache_dir, setting):
    from bikestate.data.cache import prepare_synthbikes
    from bikestate.data.catalog import register_bike_instances

    size = tuple(setting["image_size"])
    train = prepare_synthbikes(cache_dir, "train", setting["train_images"], 101, size)
    val = prepare_synthbikes(cache_dir, "val", setting["val_images"], 102, size)
    register_bike_instances(TRAIN_NAME, *train, replace=True)
    register_bike_instances(VAL_NAME, *val, replace=True)
    return {"train": train, "val": val}


def _finite_or_none(v):
    """A metric as a float, or None where it is undefined (None, NaN): JSON null."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


# ------------------------------------------------------------------------------ state head alone


def _one_vs_rest_auc(scores, positive):
    """P(score of a positive > score of a negative), ties counting half; None if a side is
    empty. ``scores`` (N,) float, ``positive`` (N,) bool."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def _gt_state_figures(gt_states, state_probs):
    """Figures of a state head on ground-truth boxes.

    Args:
        gt_states: (N,) ground-truth states; state_probs: (N, S) predicted probabilities.
    Returns:
        ``state_gt/accuracy`` and ``state_gt/macro_f1`` of the argmax (null if N = 0),
        ``state_gt_predicted_shares`` (how often each state is the argmax) and
        ``state_gt_auc`` (per state, one-vs-rest AUC of its probability: how well the head
        ranks that state's boxes above the others, whether or not the argmax ever picks it).
    """
    import numpy as np

    from bikestate.constants import STATE_NAMES
    from bikestate.evaluation.states import state_metrics

    gt = np.asarray(gt_states, dtype=np.int64)
    probs = np.asarray(state_probs, dtype=np.float64).reshape(len(gt), len(STATE_NAMES))
    pred = probs.argmax(axis=1)
    metrics, cm = state_metrics(gt, pred, STATE_NAMES)
    total = max(int(cm.sum()), 1)

    return {"state_gt/accuracy": _finite_or_none(metrics["accuracy"]),
            "state_gt/macro_f1": _finite_or_none(metrics["macro_f1"]),
            "state_gt_predicted_shares": {name: int(n) / total
                                          for name, n in zip(STATE_NAMES, cm.sum(axis=0))},
            "state_gt_auc": {name: _one_vs_rest_auc(probs[:, s], gt == s)
                             for s, name in enumerate(STATE_NAMES)}}


@torch.no_grad()
def bikestate_states_on_gt(model, cfg, dataset_name):
    """The state head of a trained bikestate model on every ground-truth box of the dataset.

    This scores the state branch alone, apart from what the detector finds: each annotated box
    is pooled from the test-size image and classified (``forward_with_given_boxes``), as the
    seed's head sees boxes while it trains. Returns :func:`_gt_state_figures`.
    """
    import numpy as np
    from detectron2.data import DatasetCatalog, detection_utils as utils, transforms as T
    from detectron2.structures import Boxes, BoxMode, Instances

    model.eval()
    # The test-time resize evaluation and BikeStatePredictor use, applied to the boxes too.
    augmentations = T.AugmentationList(utils.build_augmentation(cfg, is_train=False))
    gt, probs = [], []
    for record in DatasetCatalog.get(dataset_name):
        anns = [a for a in record.get("annotations", []) if a.get("state") is not None]
        if not anns:
            continue
        aug_input = T.AugInput(
            utils.read_image(record["file_name"], format=cfg.INPUT.FORMAT),
            boxes=np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                            for a in anns], dtype=np.float32))
        augmentations(aug_input)
        image, boxes = aug_input.image, aug_input.boxes
        h, w = image.shape[:2]
        inputs = [{"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
                   "height": h, "width": w}]
        images = model.preprocess_image(inputs)
        # The input pixels too, for a state head that pools them (IN_FEATURES "image").
        features = dict(model.backbone(images.tensor), image=images.tensor)
        given = Instances((h, w))
        given.pred_boxes = Boxes(torch.as_tensor(boxes, device=model.device))
        given.pred_classes = torch.tensor([a["category_id"] for a in anns], device=model.device)
        out = model.roi_heads.forward_with_given_boxes(features, [given])[0]
        probs += out.state_scores.tolist()
        gt += [int(a["state"]) for a in anns]
    return _gt_state_figures(gt, probs)


@torch.no_grad()
def seed_states_on_gt(model, loader, device):
    """:func:`bikestate_states_on_gt` for the seed model (its transform, features and head)."""
    model.eval()
    base = model.base_model
    gt, probs = [], []
    for images, targets in loader:
        keep = [i for i, t in enumerate(targets) if len(t["boxes"])]
        if not keep:
            continue
        gt += [int(s) for i in keep for s in targets[i]["states"]]
        images = [images[i].to(device) for i in keep]
        targets = [{"boxes": targets[i]["boxes"].to(device),
                    "labels": targets[i]["labels"].to(device)} for i in keep]
        image_list, resized = base.transform(images, targets)  # boxes resized with the images
        features = base.backbone(image_list.tensors)
        logits = model._state_logits(features, [t["boxes"] for t in resized],
                                     image_list.image_sizes)
        probs += logits.float().softmax(dim=1).tolist()
    return _gt_state_figures(gt, probs)


# ------------------------------------------------------------------------------ models


def _flat(results):
    """Nested evaluator results -> the reported metrics, NaN as None."""
    out = {}
    for key in METRICS:
        task, name = key.split("/")
        out[key] = _finite_or_none(results.get(task, {}).get(name))
    return out


def bikestate_cfg(model, setting, args, output_dir):
    w, h = setting["image_size"]
    iters_per_epoch = math.ceil(setting["train_images"] / 2)
    max_iter = setting["epochs"] * iters_per_epoch
    cfg = load_config(os.path.join(REPO, CONFIGS[model]))
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
    if not args.augment:
        opts += ["INPUT.RANDOM_FLIP", "none", "INPUT.COLOR_JITTER.ENABLED", False]
    if model == "bikestate_r50":
        # A per-epoch validation loss drives the plateau schedule.
        opts += R50_SCRATCH_OPTS + ["TEST.EVAL_PERIOD", iters_per_epoch]
    else:
        opts += ["MODEL.WEIGHTS", "", "TEST.EVAL_PERIOD", max_iter]
    cfg.merge_from_list(opts + list(args.opts))
    return cfg


def _norm_layers(module):
    """Sorted class names of the normalisation layers in ``module`` (e.g. ``["GroupNorm"]``):
    what was built, whichever library built it."""
    # torchvision's and detectron2's FrozenBatchNorm2d subclass nn.Module only: known by name.
    return sorted({type(m).__name__ for m in module.modules()
                   if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))
                   or type(m).__name__ == "FrozenBatchNorm2d"})


def _random_augmentations(cfg):
    """Class names of the random augmentations of bikestate's training mapper for ``cfg``: all
    of them but a resize to one size (the test size here: no multi-scale training)."""
    from detectron2.data import transforms as T

    from bikestate.data.mapper import build_bike_augmentation

    one_size = (len(cfg.INPUT.MIN_SIZE_TRAIN) == 1
                and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "choice")
    return [type(a).__name__ for a in build_bike_augmentation(cfg, is_train=True)
            if not (isinstance(a, T.ResizeShortestEdge) and one_size)]


class ImageCounter:
    """Counts the images a bikestate training loop takes from its data loader.

    :meth:`attach` (a ``before_train`` callback) wraps the loop's data loader so that every
    batch the loop draws adds ``len(batch)`` to :attr:`images`: the images trained on, whatever
    the sampler, an early stop or unreadable images skipped (they never reach a batch).
    """

    def __init__(self):
        self.images = 0

    def attach(self, trainer):
        loop = trainer._trainer  # DefaultTrainer's inner loop: the one that draws the batches
        loader = loop.data_loader
        loop.reset_data_loader(lambda: self._counted(loader))

    def _counted(self, loader):
        for batch in loader:
            self.images += len(batch)
            yield batch


def run_bikestate(model, setting, args, work_dir):
    from detectron2.engine import hooks
    from detectron2.utils.env import seed_all_rng

    from bikestate.engine import BikeStateTrainer, prepare_training_config

    cfg = bikestate_cfg(model, setting, args, os.path.join(work_dir, model))
    for notice in prepare_training_config(cfg):
        logger.info(notice)
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # what tools/train_net.py's default_setup does
    start = time.perf_counter()
    trainer = BikeStateTrainer(cfg)
    counter = ImageCounter()
    trainer.register_hooks([hooks.CallbackHook(before_train=counter.attach)])
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    wall = time.perf_counter() - start
    out = _flat(results or {})
    out.update(bikestate_states_on_gt(trainer.model, cfg, VAL_NAME))
    out.update({"wall_s": wall, "iterations": cfg.SOLVER.MAX_ITER,
                "images_seen": counter.images,
                "images_planned": (cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH
                                   * cfg.SOLVER.GRAD_ACCUM_STEPS),
                "norm_layers": _norm_layers(trainer.model.backbone),
                "augmentation": _random_augmentations(cfg),
                "warmup_iters": cfg.SOLVER.WARMUP_ITERS,
                "config": CONFIGS[model], "amp": bool(cfg.SOLVER.AMP.ENABLED)})
    del trainer
    return out


def run_seed(setting, args, data, work_dir):
    from benchmarks import seed_baseline as S

    w, h = setting["image_size"]
    S.seed_everything(42)
    model = S.build_seed_model(num_parts=22, weights=args.seed_weights, min_size=min(w, h),
                               max_size=max(w, h), norm=args.seed_norm).to(args.device)
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
    os.makedirs(os.path.join(work_dir, "seed_r50"), exist_ok=True)
    torch.save(model.state_dict(), os.path.join(work_dir, "seed_r50", "model_final.pth"))
    out = _flat(results)
    out.update(seed_states_on_gt(model, val_loader, args.device))
    out.update({"wall_s": wall, "iterations": setting["epochs"] * len(train_loader),
                "images_seen": sum(epoch["images"] for epoch in history),
                "images_planned": setting["epochs"] * len(train_loader.dataset),
                "norm_layers": _norm_layers(model.base_model.backbone),
                "augmentation": [], "warmup_iters": 0,
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
    parser.add_argument("--seed-norm", choices=["bn", "gn"], default=None,
                        help="seed baseline from scratch: GroupNorm in ResNet and FPN as "
                             "bikestate (gn, the default) or trainable BatchNorm (bn)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="bikestate trains without its random flip and colour jitter, as "
                             "the seed")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(),
                                                             "bikestate_bench_cache"))
    parser.add_argument("--work-dir", default=None,
                        help="checkpoints and evaluation files (default: a temporary folder)")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config options for the bikestate models (an ablation: e.g. "
                             "MODEL.ROI_STATE_HEAD.LOSS_WEIGHT 1.0); recorded with the figures")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    if len(args.opts) % 2:
        parser.error("--opts takes KEY VALUE pairs")
    if args.seed_weights is None:
        args.seed_norm = args.seed_norm or "gn"
    elif args.seed_norm is not None:
        parser.error("--seed-norm is for a seed model from scratch: torchvision's COCO weights "
                     "(--seed-weights) come with FrozenBatchNorm")
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
    seen = {m["images_seen"] for m in models.values()}
    figures = {
        "setting": args.setting,
        "device": args.device,
        "image_size": list(setting["image_size"]),
        "train_images": setting["train_images"],
        "val_images": setting["val_images"],
        "epochs": setting["epochs"],
        "images_planned": setting["epochs"] * setting["train_images"],
        # The count every model agrees on; null if they differ (print_table says so).
        "images_seen": seen.pop() if len(seen) == 1 else None,
        "seed_norm": args.seed_norm,
        "seed_weights": args.seed_weights,
        "augment": args.augment,
        "workers": setting["workers"],
        "opts": list(args.opts),
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "models": models,
        "total_wall_s": time.perf_counter() - start,
    }
    return report("accuracy", figures, print_table, args)


def print_table(figures):
    from tabulate import tabulate

    models = figures["models"]
    keys = list(METRICS) + ["state_gt/accuracy", "state_gt/macro_f1", "wall_s"]
    rows = [[name] + ["-" if m.get(k) is None else f"{m[k]:.3f}" for k in keys]
            for name, m in models.items()]
    if figures["images_seen"] is not None:
        seen = f"{figures['images_seen']} images seen (counted) by every model"
    else:
        seen = ("IMAGES SEEN DIFFER between the models ("
                + ", ".join(f"{name} {m['images_seen']}" for name, m in models.items())
                + f"; {figures['images_planned']} planned)")
    print(f"\nAccuracy, {figures['setting']} setting: {seen}, "
          f"{figures['image_size'][0]}x{figures['image_size'][1]}, {figures['device']}")
    print(tabulate(rows, headers=["model"] + keys))
    recipe = [[name, ", ".join(m["norm_layers"]), ", ".join(m["augmentation"]) or "none",
               m["warmup_iters"], m["images_seen"], m["images_planned"]]
              for name, m in models.items()]
    print(f"\nRecipes (bikestate augmentation {'on' if figures['augment'] else 'off'}, "
          f"seed norm {figures['seed_norm'] or 'of the COCO weights'}):")
    print(tabulate(recipe, headers=["model", "norm layers", "random augmentation",
                                    "warm-up iters", "images seen", "images planned"]))


if __name__ == "__main__":
    main()
