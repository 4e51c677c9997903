"""State-branch recipes at the demo's budget: one training run per recipe and seed, scored on
SynthBikes val by the verdict rule the inspection report uses.

Every run is ``tools/train_net.py`` with the small CPU config on the demo's data (SynthBikes
v2, 400 training / 60 validation images at 640x480, generated once into ``--cache-dir`` with
the demo's seeds 1 and 2), ``SEED`` set, W&B off, one evaluation at the end and the operating
point chosen on val after training, exactly as ``make demo`` trains. ``--budget K`` trains K
times the demo's 1,200 iterations (cosine schedule over the whole run).

A recipe is a set of config keys, mostly ``MODEL.ROI_STATE_HEAD``'s; every recipe spells out all
the keys it depends on (over :data:`DETECTOR` and, with a state branch, :data:`REFERENCE`, the
box-feature MLP head), so a record keeps its meaning when the config defaults change. A recipe
may also train on other state shares than DelftBikes' (:data:`TRAIN_SHARES_KEY`): its training
split is then generated with those shares; val keeps DelftBikes' shares for every recipe. A
recipe may also train a multiple of the budget's iterations (:data:`ITERATIONS_SCALE_KEY`).
``plain_detector`` is the VIPriors DelftBikes baseline:
``configs/bike_small_cpu_plain_detector.yaml`` (no state branch, trained without the absent
boxes, every detection "present").

One record per finished run is appended to ``benchmarks/results/state_recipe.jsonl`` (an
interrupted ablation keeps the runs it finished; ``--resume`` scores a run folder that already
holds a finished run with the same command instead of training it again). Figures:
``bbox/AP``, ``bbox/AP50``, the verdict figures (present-vs-absent AUROC, hallucination at 95 %
present recall, damage AP, present recall with hallucination at the default point, verdict
macro-F1), the state head on ground-truth boxes, the calibrated operating point's figures on
val, the training time and the images seen (iterations x batch, from the trainer's log).

    python benchmarks/bench_state_recipe.py --recipes reference conv_image --seeds 42 43

``--step-cost`` times recipes instead of scoring them: each recipe in turn trains
``--cost-iters`` iterations (100) from the final weights of its run of the first ``--seeds``
(a trained detector's foreground counts; random weights with ``--quick``), no warm-up, no
evaluation, for ``--cost-rounds`` rounds (2) that alternate the recipes, so that a drift of the
machine falls on all of them alike. One ``state_recipe_cost`` record: per recipe the seconds
per step of each round (the median of the trainer's 20-iteration windows after the first), their
median, the median of the per-round ratios to the first recipe, and the foreground proposals
and state-head rows per image (``roi_head/num_fg_samples``, ``roi_head/num_state_rows``).

    python benchmarks/bench_state_recipe.py --step-cost --seeds 42 \
        --recipes conv_image_state_lr2_fg50_cap32 conv_image_state_lr2_fg50_res24
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.common import RESULTS_DIR, append_record, at_least  # noqa: E402
from bikestate.verdict import THRESHOLDS_FILE, OperatingPoint  # noqa: E402
from bikestate.synth import SYNTH_VERSIONS  # noqa: E402

SMALL_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
PLAIN_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu_plain_detector.yaml")
DEMO_ITERS = 1200  # the demo's budget (configs/bike_small_cpu.yaml SOLVER.MAX_ITER)
# The recipe that the config defaults equal (tests check), whose mean is held to the targets.
DEFAULT_RECIPE = "conv_image_state_lr2_fg50_res24_dmg16_refine8_det"
KEY = "MODEL.ROI_STATE_HEAD."

# Detector keys every recipe depends on, as the configs had them before recipes changed them.
DETECTOR = {"MODEL.ROI_HEADS.POSITIVE_FRACTION": "0.25"}
# The box-feature MLP head trained on the sampled proposals: the recipe every other one with a
# state branch is written against.
REFERENCE = {
    "NAME": "MLPStateHead", "IN_FEATURES": "[]", "POOLER_RESOLUTION": "24",
    "BOX_CONTEXT": "1.0", "CLASS_CONDITIONED": "False", "TRAIN_ON": "proposals",
    "LOSS_WEIGHT": "0.5", "STATE_LOSS_WEIGHTS": "[]", "AUTO_LOSS_WEIGHTS": "False",
    "LOGIT_ADJUST_TAU": "0.0", "FOCAL_GAMMA": "0.0", "TRAIN_BOX_JITTER": "0.0",
    "PROPOSALS_PER_IMAGE": "0", "SOLVER.STATE_HEAD_LR_FACTOR": "1.0",
    "SOLVER.STATE_REFINE.EPOCHS": "0",
}
# The crop classifier on the input pixels (each box with context, part embedding).
CONV_IMAGE = {"NAME": "ConvStateHead", "IN_FEATURES": '["image"]', "POOLER_RESOLUTION": "32",
              "BOX_CONTEXT": "1.3", "CLASS_CONDITIONED": "True"}
# CONV_IMAGE trained as recipe conv_image: ground-truth boxes beside the proposals, logit
# adjustment, state loss weight 1; its variants change one thing.
CONV_IMAGE_TRAINED = dict(CONV_IMAGE, TRAIN_ON="both", LOSS_WEIGHT="1.0", LOGIT_ADJUST_TAU="1.0")
# CONV_IMAGE_TRAINED with the state head at twice the learning rate (recipe conv_image_state_lr2).
CONV_IMAGE_STATE_LR2 = dict(CONV_IMAGE_TRAINED, **{"SOLVER.STATE_HEAD_LR_FACTOR": "2.0"})
# Half of the sampled ROIs foreground (DETECTOR has a quarter).
FG50 = {"MODEL.ROI_HEADS.POSITIVE_FRACTION": "0.5"}
# A recipe may train on other state shares than DelftBikes' (val keeps them): the config key
# of the SynthBikes default, applied here when the training split is generated (the runs name
# their data files explicitly, so it is not passed to train_net.py).
TRAIN_SHARES_KEY = "BIKESTATE.DATA.SYNTH_TRAIN_STATE_PROBS"
# A recipe may train for another number of iterations than the budget's (a multiple of it,
# applied by recipe_command), e.g. to give a plain recipe the wall clock of a costlier one.
ITERATIONS_SCALE_KEY = "iterations_scale"
# Recipe conv_image_state_lr2_fg50_res24: half foreground, every foreground proposal in the
# state loss, 24 x 24 crops.
RES24 = dict(CONV_IMAGE_STATE_LR2, **FG50, POOLER_RESOLUTION="24")
# Recipe conv_image_state_lr2_fg50_res24_dmg16: res24 trained on 16 % damaged parts.
DMG16 = dict(RES24, **{TRAIN_SHARES_KEY: "[0.5, 0.16, 0.2, 0.14]"})
# The refinement stage of recipe conv_image_state_lr2_fg50_res24_dmg16_refine8.
REFINE8 = {"SOLVER.STATE_REFINE.EPOCHS": "8", "SOLVER.STATE_REFINE.GT_BOXES": "True"}
# name -> (config file, changes to DETECTOR and, for SMALL_CONFIG, REFERENCE, what it tests); a
# change whose key has a dot is a full config key (e.g. SOLVER.BASE_LR), the others are keys of
# MODEL.ROI_STATE_HEAD.
RECIPES = {
    "reference": (SMALL_CONFIG, {}, "MLP on the box head's features, proposals, CE, weight 0.5"),
    "plain_detector": (PLAIN_CONFIG, {}, "no state branch, trained without absent boxes"),
    "plain_detector_fg50": (PLAIN_CONFIG, FG50,
                            "plain_detector with half of the sampled ROIs foreground"),
    "mlp_both": (SMALL_CONFIG, {"TRAIN_ON": "both"}, "+ ground-truth boxes in the state loss"),
    "mlp_auto_weights": (SMALL_CONFIG, {"AUTO_LOSS_WEIGHTS": "True"},
                         "+ class-balanced weights"),
    "mlp_logit_adjust": (SMALL_CONFIG, {"LOGIT_ADJUST_TAU": "1.0"}, "+ logit adjustment"),
    "mlp_focal": (SMALL_CONFIG, {"FOCAL_GAMMA": "2.0"}, "+ focal loss, gamma 2"),
    "mlp_loss_weight_2": (SMALL_CONFIG, {"LOSS_WEIGHT": "2.0"}, "state loss weight 2"),
    "conv_image": (SMALL_CONFIG, CONV_IMAGE_TRAINED,
                   "crop CNN on the pixels, context 1.3, part embedding, both, logit adj., 1.0"),
    "conv_image_ce": (SMALL_CONFIG, dict(CONV_IMAGE, TRAIN_ON="both", LOSS_WEIGHT="1.0"),
                      "conv_image without logit adjustment"),
    "conv_image_gt": (SMALL_CONFIG, dict(CONV_IMAGE_TRAINED, TRAIN_ON="gt_boxes"),
                      "conv_image trained on ground-truth boxes only"),
    "conv_image_jitter": (SMALL_CONFIG, dict(CONV_IMAGE_TRAINED, TRAIN_BOX_JITTER="0.1"),
                          "conv_image on boxes moved by 0.1 x their size in training"),
    "conv_image_context_2": (SMALL_CONFIG, dict(CONV_IMAGE_TRAINED, BOX_CONTEXT="2.0"),
                             "conv_image with twice the box as context (1.3 in conv_image)"),
    # Every figure improves steeply with the budget (3x: AP50 +12, damage AP x2): a recipe that
    # learns faster within 1,200 iterations is a lever too.
    "conv_image_lr2": (SMALL_CONFIG, dict(CONV_IMAGE_TRAINED, **{"SOLVER.BASE_LR": "0.002"}),
                       "conv_image at twice the learning rate (AdamW 0.002; 0.001 in conv_image)"),
    # conv_image_lr2 helped the state head and cost the detector: the crop CNN alone faster.
    "conv_image_state_lr2": (SMALL_CONFIG, CONV_IMAGE_STATE_LR2,
                             "conv_image with the state head at twice the learning rate"),
    # conv_image_state_lr2 against conv_image: every state figure a little better, the detector
    # the same; a faster state head still, to find where the gain stops.
    "conv_image_state_lr4": (SMALL_CONFIG, dict(CONV_IMAGE_TRAINED,
                                                **{"SOLVER.STATE_HEAD_LR_FACTOR": "4.0"}),
                             "conv_image with the state head at four times the learning rate"),
    # With 22 parts per image, 128 sampled ROIs at a quarter foreground give each part about
    # 1.5 foreground samples per step, and the detector puts a third of the absent parts' boxes
    # off the part (bench_state_boxes.py): half foreground, same ROIs.
    "conv_image_state_lr2_fg50": (
        SMALL_CONFIG, dict(CONV_IMAGE_STATE_LR2, **FG50),
        "conv_image_state_lr2 with half of the sampled ROIs foreground (a quarter before)"),
    # fg50 doubles the state head's rows (~64 foreground proposals per image instead of ~32)
    # and its step cost with them: the same detector sampling, the state head's rows capped
    # at what a quarter foreground gives it.
    "conv_image_state_lr2_fg50_cap32": (
        SMALL_CONFIG, dict(CONV_IMAGE_STATE_LR2, **FG50, PROPOSALS_PER_IMAGE="32"),
        "fg50 with loss_state on at most 32 foreground proposals per image"),
    # The crop CNN's forward and backward costs about in proportion to its pixels: fg50's
    # ~172 rows per batch at 24 x 24 cost what the capped recipe's ~108 at 32 x 32 do (~105 vs
    # ~120 ms on this 2-core CPU), so fg50 keeps all its rows at the cap's cost.
    "conv_image_state_lr2_fg50_res24": (
        SMALL_CONFIG, RES24, "fg50 with 24 x 24 crops (32 x 32 in conv_image)"),
    # Damaged is 6 % of DelftBikes' parts: ~25 damaged boxes per part in 400 pictures. 16 %
    # damaged raised damage AP by 0.07 for 0.3 points of bbox/AP (two seeds); 20 % damaged
    # with 25 % absent cost 3 points of bbox/AP (two seeds, not a recipe here).
    "conv_image_state_lr2_fg50_res24_dmg16": (
        SMALL_CONFIG, DMG16,
        "res24 trained on 16 % damaged parts (6 % in DelftBikes and in val)"),
    # The state head judges the detector's final boxes but learns on proposals and annotated
    # boxes: 8 epochs of the state head alone on the detector's own matched boxes of the
    # training pictures after the last iteration (~85 s on the 2-core CPU, a fifth of training).
    "conv_image_state_lr2_fg50_res24_dmg16_refine8": (
        SMALL_CONFIG, dict(DMG16, **REFINE8),
        "dmg16, then 8 epochs of the state head alone on the detector's matched boxes"),
    # refine8 spends half its epochs on the annotated boxes, which the head already knows best
    # (state head on annotated boxes 0.81 macro-F1): the detector's boxes alone, ~25 s less.
    "conv_image_state_lr2_fg50_res24_dmg16_refine8_det": (
        SMALL_CONFIG, dict(DMG16, **dict(REFINE8, **{"SOLVER.STATE_REFINE.GT_BOXES": "False"})),
        "refine8 on the detector's matched boxes alone (no annotated boxes)"),
    # What refine8's wall clock buys when spent on training instead: 1.2x the iterations.
    "conv_image_state_lr2_fg50_res24_dmg16_iters120": (
        SMALL_CONFIG, dict(DMG16, **{ITERATIONS_SCALE_KEY: "1.2"}),
        "dmg16 trained 1.2x the iterations (refine8's extra wall clock)"),
}

# Evaluator figures kept in a record (flattened keys of bikestate_metrics.json).
KEPT = ("bbox/AP", "bbox/AP50", "bbox_present/AP", "verify/auroc_present", "verify/halluc_at_95r",
        "verify/halluc_at_90r", "verify/damage_ap", "verify/present_recall",
        "verify/hallucination_rate", "verify/not_found_rate", "verify/damage_precision",
        "verify/damage_recall", "verify/macro_f1", "verify/macro_f1_majority",
        "verify/f1-intact", "verify/f1-damaged", "verify/f1-absent", "verify/f1-occluded",
        "state_gt/macro_f1", "state_gt/auroc-damaged", "state_gt/auroc-absent")


def plain_detector_for(recipe):
    """The plain-detector recipe with the detector keys (:data:`DETECTOR`) of ``recipe``: the
    baseline it is compared with, everything but the state branch equal (None if there is no
    such recipe)."""
    def detector_keys(name):
        return {k: RECIPES[name][1].get(k, v) for k, v in DETECTOR.items()}

    return next((name for name, (config, _, _) in RECIPES.items()
                 if config == PLAIN_CONFIG and detector_keys(name) == detector_keys(recipe)), None)


def config_key(key):
    """The full config key of a recipe change (see RECIPES)."""
    return key if "." in key else KEY + key


def recipe_command(name, seed, iters, data, out_dir):
    """(config file, opts) of one run of ``iters`` iterations."""
    config, changes, _ = RECIPES[name]
    settings = {**DETECTOR, **(REFERENCE if config == SMALL_CONFIG else {}), **changes}
    settings.pop(TRAIN_SHARES_KEY, None)  # in the data (train_shares), not a training option
    iters = recipe_iterations(name, iters)
    settings.pop(ITERATIONS_SCALE_KEY, None)
    opts = []
    for key, value in settings.items():
        opts += [config_key(key), value]
    opts += ["SEED", str(seed), "SOLVER.MAX_ITER", str(iters), "TEST.EVAL_PERIOD", str(iters),
             "SOLVER.CHECKPOINT_PERIOD", str(iters), "WANDB.MODE", "disabled",
             "MODEL.DEVICE", "cpu",
             "BIKESTATE.DATA.TRAIN_JSON", data["train"][0],
             "BIKESTATE.DATA.TRAIN_IMAGES", data["train"][1],
             "BIKESTATE.DATA.VAL_JSON", data["val"][0],
             "BIKESTATE.DATA.VAL_IMAGES", data["val"][1], "OUTPUT_DIR", out_dir]
    return config, opts


def recipe_iterations(name, iters):
    """The iterations recipe ``name`` trains for at a budget of ``iters``."""
    return round(iters * float(RECIPES[name][1].get(ITERATIONS_SCALE_KEY, 1)))


def train_shares(name):
    """The state shares recipe ``name`` trains on (None: the generator's DelftBikes shares)."""
    value = RECIPES[name][1].get(TRAIN_SHARES_KEY)
    return None if value is None else [float(v) for v in json.loads(value)]


def synth_split(args, split, state_probs=None):
    """(coco_json, image_root) of the demo's SynthBikes ``split`` (train: seed 1, val: seed 2),
    generated once into ``--cache-dir``."""
    from bikestate.data.cache import prepare_synthbikes

    num, seed = (args.train_images, 1) if split == "train" else (args.val_images, 2)
    return prepare_synthbikes(args.cache_dir, split, num, seed, (640, 480), style="v2",
                              state_probs=state_probs)


def recipe_data(name, args, data):
    """``data`` with the training split of recipe ``name``'s state shares."""
    shares = train_shares(name)
    return data if shares is None else dict(data, train=synth_split(args, "train", shares))


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = v
    return out


def read_run(out_dir):
    """Figures of a finished run folder, or None when it holds no finished run."""
    metrics_file = os.path.join(out_dir, "inference", "bikestate_metrics.json")
    thresholds_file = os.path.join(out_dir, THRESHOLDS_FILE)
    if not (os.path.exists(metrics_file) and os.path.exists(thresholds_file)):
        return None
    with open(metrics_file, encoding="utf-8") as f:
        metrics = flat(json.load(f))
    point = OperatingPoint.load(thresholds_file)
    calibrated = dict(point.chosen_on["figures"], presence=point.presence)
    last_iter, batch = None, None
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            last_iter = row.get("iteration", last_iter)
    with open(os.path.join(out_dir, "config.yaml"), encoding="utf-8") as f:
        for line in f:
            if line.strip().startswith("IMS_PER_BATCH:"):
                batch = int(line.split(":")[1])
    return {"metrics": {k: metrics.get(k) for k in KEPT}, "calibrated": calibrated,
            "images_seen": None if last_iter is None or batch is None
            else (last_iter + 1) * batch}


def run_one(name, seed, args, data):
    out_dir = os.path.join(args.work_dir, f"{name}_b{args.budget}_s{seed}")
    config, opts = recipe_command(name, seed, args.iterations, recipe_data(name, args, data),
                                  out_dir)
    command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"),
               "--config-file", config, *opts]
    stamp = os.path.join(out_dir, "bench_command.json")
    figures = None
    if args.resume and os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            if json.load(f) == command[1:]:
                figures = read_run(out_dir)
                if figures is not None:
                    print(f"[{name} seed {seed}] reusing the finished run in {out_dir}")
    train_s = None
    if figures is None:
        os.makedirs(out_dir, exist_ok=True)
        with open(stamp, "w", encoding="utf-8") as f:
            json.dump(command[1:], f)
        print(f"\n[{name} seed {seed}] {RECIPES[name][2]}\n$ {' '.join(command)}", flush=True)
        start = time.time()
        # The trainer's own log (eta, losses every 20 iterations) is the progress display.
        result = subprocess.run(command, cwd=REPO)
        train_s = time.time() - start
        if result.returncode != 0:
            sys.exit(f"bench_state_recipe: error: {name} seed {seed} failed with exit status "
                     f"{result.returncode} (log: {os.path.join(out_dir, 'log.txt')})")
        figures = read_run(out_dir)
        if figures is None:
            sys.exit(f"bench_state_recipe: error: {name} seed {seed} finished without "
                     f"inference/bikestate_metrics.json and thresholds.json in {out_dir}")
    figures.update({
        "recipe": name, "description": RECIPES[name][2], "seed": seed, "budget": args.budget,
        "iterations": recipe_iterations(name, args.iterations),
        "config": os.path.relpath(config, REPO), "opts": opts[:opts.index("SEED")],
        "train_images": args.train_images, "val_images": args.val_images,
        "synth_style": "v2", "synth_version": SYNTH_VERSIONS["v2"], "image_size": "640x480",
        "train_state_probs": train_shares(name),
        "wall_s": train_s,
        "quick": args.quick,
    })
    return figures


def cost_weights(name, seed, args):
    """The weights ``--step-cost`` starts recipe ``name`` from ("" with --quick: random)."""
    if args.quick:
        return ""
    weights = os.path.join(args.work_dir, f"{name}_b1_s{seed}", "model_final.pth")
    if not os.path.isfile(weights):
        sys.exit(f"bench_state_recipe: error: {weights} is missing: train the recipe first "
                 f"(--recipes {name} --seeds {seed})")
    return weights


def cost_run(name, seed, round_index, args, data):
    """One timed run of recipe ``name`` (module docstring, ``--step-cost``).

    Returns:
        (seconds per step, foreground proposals per image, state-head rows per image)
    """
    weights = cost_weights(name, seed, args)
    out_dir = os.path.join(args.work_dir, "step_cost", f"{name}_round{round_index}")
    shutil.rmtree(out_dir, ignore_errors=True)
    config, opts = recipe_command(name, seed, args.cost_iters, data, out_dir)
    # Later options win: the trained weights, full rate from the first step, no evaluation, no
    # refinement stage after the steps, the same steps for every recipe.
    opts += ["MODEL.WEIGHTS", weights, "SOLVER.WARMUP_ITERS", "0", "DATASETS.TEST", "()",
             "SOLVER.CHECKPOINT_PERIOD", str(10 * args.cost_iters),
             "SOLVER.MAX_ITER", str(args.cost_iters), "SOLVER.STATE_REFINE.EPOCHS", "0"]
    command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"),
               "--config-file", config, *opts]
    print(f"\n[{name} round {round_index + 1}/{args.cost_rounds}] {args.cost_iters} iterations "
          f"from {weights or 'random weights'}", flush=True)
    if subprocess.run(command, cwd=REPO).returncode != 0:
        sys.exit(f"bench_state_recipe: error: timing {name} failed "
                 f"(log: {os.path.join(out_dir, 'log.txt')})")
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        windows = [row for row in map(json.loads, f) if "time" in row]
    # The first window holds the start-up steps (first allocations, thread pools).
    timed = windows[1:] or windows
    return (statistics.median(w["time"] for w in timed),
            statistics.mean(w["roi_head/num_fg_samples"] for w in windows),
            statistics.mean(w.get("roi_head/num_state_rows", 0.0) for w in windows))


def step_cost(args, data):
    """The ``state_recipe_cost`` figures of ``args.recipes`` (module docstring)."""
    seed = args.seeds[0]
    runs = {name: [] for name in args.recipes}
    for round_index in range(args.cost_rounds):
        for name in args.recipes:
            runs[name].append(cost_run(name, seed, round_index, args, data))
    first = [s for s, _, _ in runs[args.recipes[0]]]
    rows = []
    for name in args.recipes:
        seconds = [s for s, _, _ in runs[name]]
        rows.append({
            "recipe": name, "rounds_s": seconds, "s_per_step": statistics.median(seconds),
            "vs_first": statistics.median(s / f for s, f in zip(seconds, first)),
            "fg_per_image": statistics.mean(fg for _, fg, _ in runs[name]),
            "state_rows_per_image": statistics.mean(r for _, _, r in runs[name]),
        })
        print(f"{name}: {rows[-1]['s_per_step']:.3f} s per step ({rows[-1]['vs_first']:.2f}x "
              f"{args.recipes[0]}), {rows[-1]['fg_per_image']:.1f} foreground proposals and "
              f"{rows[-1]['state_rows_per_image']:.1f} state rows per image", flush=True)
    return {"recipes": list(args.recipes), "weights_seed": None if args.quick else seed,
            "iterations": args.cost_iters, "rounds": args.cost_rounds, "rows": rows,
            "load_average_1min": os.getloadavg()[0], "quick": args.quick,
            "image_size": "640x480", "train_images": args.train_images}


def print_row(fig):
    m, c = fig["metrics"], fig["calibrated"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"
    print(f"{fig['recipe']} seed {fig['seed']}: AP50 {f(m['bbox/AP50'])}, AUROC "
          f"{f(m['verify/auroc_present'])}, halluc@95r {f(m['verify/halluc_at_95r'])}, damage AP "
          f"{f(m['verify/damage_ap'])}, macro-F1 {f(m['verify/macro_f1'])} (calibrated "
          f"{f(c.get('macro_f1'))}, damage P/R {f(c.get('damage_precision'))}/"
          f"{f(c.get('damage_recall'))})", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["reference"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--budget", type=at_least(1), default=1,
                        help="multiple of the demo's 1,200 iterations")
    parser.add_argument("--train-images", type=at_least(1), default=400)
    parser.add_argument("--val-images", type=at_least(1), default=60)
    parser.add_argument("--cache-dir", default=os.path.join(REPO, "output", "synthbikes_cache"),
                        help="generated SynthBikes splits (reused across runs)")
    parser.add_argument("--work-dir", default=os.path.join(REPO, "output", "state_recipe"),
                        help="one training folder per recipe, budget and seed")
    parser.add_argument("--resume", action="store_true",
                        help="score finished runs of the same command instead of retraining")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 8 + 4 images, 1/100 of the budget (recorded as quick)")
    parser.add_argument("--step-cost", action="store_true",
                        help="time the recipes' training steps instead (module docstring)")
    parser.add_argument("--cost-iters", type=at_least(5), default=100,
                        help="--step-cost: iterations of each timed run (the trainer times "
                             "those after the third)")
    parser.add_argument("--cost-rounds", type=at_least(1), default=2,
                        help="--step-cost: rounds alternating the recipes")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_images, args.val_images = 8, 4
    if args.step_cost:
        if len(set(args.recipes)) != len(args.recipes):
            parser.error("--step-cost: each recipe once")
        for name in args.recipes:  # every recipe's weights before any work
            cost_weights(name, args.seeds[0], args)

    data = {split: synth_split(args, split) for split in ("train", "val")}
    args.iterations = DEMO_ITERS * args.budget // (100 if args.quick else 1)
    if args.step_cost:
        figures = step_cost(args, data)
        if not args.no_record:
            append_record("state_recipe_cost", figures, results_dir=args.results_dir)
        return
    for name in args.recipes:
        for seed in args.seeds:
            figures = run_one(name, seed, args, data)
            print_row(figures)
            if not args.no_record:
                append_record("state_recipe", figures, results_dir=args.results_dir)


if __name__ == "__main__":
    main()
