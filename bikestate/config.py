"""Config keys of bikestate, added to a detectron2 config by :func:`add_bikestate_config`.

Call it before ``merge_from_file``: detectron2 rejects keys it does not know, which is what
catches a typo in a user's YAML. Every key has a one-line comment; docs/config.md lists the keys
by topic. Where the data paths come from, and which source wins, is :func:`get_user_config`'s
rule (the one place it is decided).
"""
import logging
import os

from detectron2.config import CfgNode as CN

from .constants import STATE_NAMES

# Environment variables (also read from a .env file) -> the config key each sets.
DATA_ENV_VARS = {
    "TRAIN_JSON": "BIKESTATE.DATA.TRAIN_JSON",
    "VAL_JSON": "BIKESTATE.DATA.VAL_JSON",
    "TRAIN_CLEANED": "BIKESTATE.DATA.TRAIN_IMAGES",
    "VAL_CLEANED": "BIKESTATE.DATA.VAL_IMAGES",
    "OUTPUT_DIR": "OUTPUT_DIR",
}


def add_bikestate_config(cfg):
    """Add every bikestate key to ``cfg`` (a detectron2 ``CfgNode``) in place; return ``cfg``.

    Also registers bikestate's ROI heads, RPN, state heads and backbones with detectron2's
    registries (by importing :mod:`bikestate.modeling`), so a config naming them can be built.
    """
    from . import modeling  # noqa: F401  registration with detectron2's registries

    _C = cfg

    # ---------------------------------------------------------------- state branch
    _C.MODEL.ROI_STATE_HEAD = CN()
    # Name of the state head in STATE_HEAD_REGISTRY.
    _C.MODEL.ROI_STATE_HEAD.NAME = "MLPStateHead"
    # Number of part states (intact, damaged, absent, occluded).
    _C.MODEL.ROI_STATE_HEAD.NUM_STATES = len(STATE_NAMES)
    # Width of the hidden layer of the state MLP.
    _C.MODEL.ROI_STATE_HEAD.HIDDEN_DIM = 256
    # Dropout after the hidden layer.
    _C.MODEL.ROI_STATE_HEAD.DROPOUT = 0.2
    # Weight of loss_state in the total loss.
    _C.MODEL.ROI_STATE_HEAD.LOSS_WEIGHT = 0.5
    # Per-state cross-entropy weights, one per state; empty means all 1 (damaged is ~6% of parts).
    _C.MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS = []
    # Condition the state on the part class (a learned part embedding joins the box features).
    _C.MODEL.ROI_STATE_HEAD.CLASS_CONDITIONED = False
    # Size of that part embedding.
    _C.MODEL.ROI_STATE_HEAD.CLASS_EMBED_DIM = 32
    # Maps each box is pooled from for the state head alone: "image" (the input pixels) or FPN
    # levels ("p3", ...); empty = the box head's features, shared with the box predictor.
    _C.MODEL.ROI_STATE_HEAD.IN_FEATURES = []
    # Side P of the P x P grid each box is pooled to when IN_FEATURES is set.
    _C.MODEL.ROI_STATE_HEAD.POOLER_RESOLUTION = 24
    # ROIAlign samples per output cell and side (0: adaptive, as many as the box covers).
    _C.MODEL.ROI_STATE_HEAD.POOLER_SAMPLING_RATIO = 2
    # Boxes are enlarged by this factor around their centre before pooling (context: the mount
    # that a missing part leaves).
    _C.MODEL.ROI_STATE_HEAD.BOX_CONTEXT = 1.0
    # ConvStateHead: number of 3x3 convolutions (every second one halves the grid).
    _C.MODEL.ROI_STATE_HEAD.NUM_CONV = 4
    # ConvStateHead: channels of the first two convolutions (doubled for the next two).
    _C.MODEL.ROI_STATE_HEAD.CONV_DIM = 32
    # ConvStateHead: normalization after each convolution ("GN", "BN", "").
    _C.MODEL.ROI_STATE_HEAD.NORM = "GN"
    # Boxes loss_state trains on: "proposals" (sampled foreground proposals with the state of
    # their matched ground truth), "gt_boxes" (the annotated boxes) or "both".
    _C.MODEL.ROI_STATE_HEAD.TRAIN_ON = "proposals"
    # In training, each side of the boxes loss_state pools moves by a normal shift of this
    # std x the box's width or height; exact annotated boxes let the head learn from how
    # tightly a box fits, which detections do not; 0 = unmoved.
    _C.MODEL.ROI_STATE_HEAD.TRAIN_BOX_JITTER = 0.0
    # In training, loss_state takes at most this many foreground proposals per image, drawn at
    # random, so that a larger ROI_HEADS.POSITIVE_FRACTION does not multiply the state head's
    # cost; 0 = all of them.
    _C.MODEL.ROI_STATE_HEAD.PROPOSALS_PER_IMAGE = 0
    # Class-balanced loss weights from STATE_PRIOR (inverse square root of the shares).
    _C.MODEL.ROI_STATE_HEAD.AUTO_LOSS_WEIGHTS = False
    # Logit adjustment (Menon et al., ICLR 2021): tau x log(prior) added to the logits in
    # training, plain argmax at test; 0 disables it.
    _C.MODEL.ROI_STATE_HEAD.LOGIT_ADJUST_TAU = 0.0
    # Focal loss gamma (Lin et al., 2017); 0 = cross-entropy.
    _C.MODEL.ROI_STATE_HEAD.FOCAL_GAMMA = 0.0
    # State shares of the training boxes (one per state); empty = counted from DATASETS.TRAIN
    # when AUTO_LOSS_WEIGHTS or LOGIT_ADJUST_TAU needs them.
    _C.MODEL.ROI_STATE_HEAD.STATE_PRIOR = []

    # Backward of the ROI poolers' ROIAlign on CPU (box head and state head): "matmul" (the
    # same gradient as matrix products, bikestate.modeling.roi_align) or "torchvision" (its
    # per-element loop). Other devices always use torchvision's kernel.
    _C.MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD = "matmul"

    # ---------------------------------------------------------------- optional timm backbone
    _C.MODEL.TIMM = CN()
    # timm model name for the "build_timm_fpn_backbone" backbone (needs the `timm` extra).
    _C.MODEL.TIMM.NAME = "resnet18"
    # Feature stages taken from the timm model, fed to the FPN (strides 4..32 for 1..4).
    _C.MODEL.TIMM.OUT_INDICES = [1, 2, 3, 4]
    # Load timm's pretrained ImageNet weights (needs a reachable hub).
    _C.MODEL.TIMM.PRETRAINED = False

    # ---------------------------------------------------------------- data
    _C.BIKESTATE = CN()
    _C.BIKESTATE.DATA = CN()
    # Training annotations in DelftBikes JSON or COCO-with-states; "" = SynthBikes. Env: TRAIN_JSON.
    _C.BIKESTATE.DATA.TRAIN_JSON = ""
    # Validation annotations, same formats. Env: VAL_JSON.
    _C.BIKESTATE.DATA.VAL_JSON = ""
    # Optional held-out test annotations, same formats (registers bike_test).
    _C.BIKESTATE.DATA.TEST_JSON = ""
    # Folder of the training images. Env: TRAIN_CLEANED.
    _C.BIKESTATE.DATA.TRAIN_IMAGES = ""
    # Folder of the validation images. Env: VAL_CLEANED.
    _C.BIKESTATE.DATA.VAL_IMAGES = ""
    # Folder of the test images.
    _C.BIKESTATE.DATA.TEST_IMAGES = ""
    # What to do with invalid boxes/images when converting: "error" (stop) or "skip" (drop them).
    _C.BIKESTATE.DATA.ON_INVALID = "error"
    # Folder where SynthBikes is generated on first use and reused.
    _C.BIKESTATE.DATA.SYNTH_CACHE_DIR = "~/.cache/bikestate/synthbikes"
    # Images generated for the default SynthBikes train / val / test splits.
    _C.BIKESTATE.DATA.SYNTH_NUM_TRAIN = 400
    _C.BIKESTATE.DATA.SYNTH_NUM_VAL = 60
    _C.BIKESTATE.DATA.SYNTH_NUM_TEST = 60
    # Seeds of the SynthBikes splits (different seeds, so no image is shared).
    _C.BIKESTATE.DATA.SYNTH_SEEDS = [1, 2, 3]
    # Size (width, height) of generated SynthBikes images.
    _C.BIKESTATE.DATA.SYNTH_IMAGE_SIZE = [640, 480]
    # Look of generated SynthBikes pictures: "v1" (flat drawings) or "v2" (photo-like scenes,
    # bike types, viewpoints, camera effects; docs/synthbikes.md).
    _C.BIKESTATE.DATA.SYNTH_STYLE = "v1"
    # Shares of intact, damaged, absent, occluded parts in the generated training split ([]:
    # DelftBikes' 0.60, 0.06, 0.20, 0.14, which val and test always keep). `make demo` trains
    # on 0.50, 0.16, 0.20, 0.14: damaged is rare in DelftBikes, and more damaged parts teach it
    # faster (benchmarks/RESULTS.md, recipe conv_image_state_lr2_fg50_res24_dmg16).
    _C.BIKESTATE.DATA.SYNTH_TRAIN_STATE_PROBS = []
    # Unreadable images skipped during training before it stops with an error (-1: no limit).
    _C.BIKESTATE.DATA.MAX_SKIPPED_IMAGES = 100
    # States whose boxes are left out of the training annotations, e.g. ["absent"] for the
    # plain detector baseline (trained on the parts that are there); evaluation keeps them.
    _C.BIKESTATE.DATA.TRAIN_DROP_STATES = []

    # Photometric augmentation of training images.
    _C.INPUT.COLOR_JITTER = CN()
    # Apply random brightness/contrast/saturation changes while training.
    _C.INPUT.COLOR_JITTER.ENABLED = True
    # Intensity range [1 - x, 1 + x] of each change.
    _C.INPUT.COLOR_JITTER.BRIGHTNESS = 0.2
    _C.INPUT.COLOR_JITTER.CONTRAST = 0.2
    _C.INPUT.COLOR_JITTER.SATURATION = 0.2

    # Pin host memory of batches when training on CUDA.
    _C.DATALOADER.PIN_MEMORY = True
    # Batches loaded in advance by each worker.
    _C.DATALOADER.PREFETCH_FACTOR = 2

    # ---------------------------------------------------------------- solver
    # "SGD" (detectron2's) or "AdamW".
    _C.SOLVER.OPTIMIZER = "SGD"
    # Betas of AdamW.
    _C.SOLVER.BETAS = (0.9, 0.999)
    # Learning rate of the state head's parameters (roi_heads.state_head) as a multiple of
    # BASE_LR: a state head with its own crop CNN can learn faster than the detector may.
    _C.SOLVER.STATE_HEAD_LR_FACTOR = 1.0
    # When > 0: train this many epochs; MAX_ITER and, if 0, TEST.EVAL_PERIOD are derived from it.
    _C.SOLVER.MAX_EPOCHS = 0
    # Evaluations per epoch when TEST.EVAL_PERIOD is derived from MAX_EPOCHS.
    _C.SOLVER.EVALS_PER_EPOCH = 1
    # Mini-batches accumulated before each optimizer step (effective batch = this x IMS_PER_BATCH).
    _C.SOLVER.GRAD_ACCUM_STEPS = 1
    # Checkpoints of the periodic checkpointer kept on disk (older ones are deleted); 0 keeps all.
    _C.SOLVER.MAX_TO_KEEP = 3
    # State-head refinement after the last iteration (bikestate.engine.state_refinement): the
    # detector frozen, the state head alone trains on its own detections of the training images
    # that match an annotated box of their part (and on the annotated boxes), the boxes it judges
    # at test time.
    _C.SOLVER.STATE_REFINE = CN()
    # Passes over those boxes; 0 = no refinement.
    _C.SOLVER.STATE_REFINE.EPOCHS = 0
    # AdamW learning rate, cosine schedule to 0 over the passes (weight decay SOLVER.WEIGHT_DECAY).
    _C.SOLVER.STATE_REFINE.BASE_LR = 0.002
    # Boxes per step.
    _C.SOLVER.STATE_REFINE.BATCH_SIZE = 256
    # A detection is used, with the state of its part's annotated box, at this IoU or more.
    _C.SOLVER.STATE_REFINE.MATCH_IOU = 0.5
    # Add the annotated boxes themselves (the detections alone give better verdicts at a third
    # less cost: benchmarks/RESULTS.md, recipes ..._refine8 and ..._refine8_det).
    _C.SOLVER.STATE_REFINE.GT_BOXES = False
    # Mirror each pooled box left-right at random (a bike faces either way).
    _C.SOLVER.STATE_REFINE.FLIP = True
    # Training images the detector runs over (a subset drawn with SEED when there are more;
    # 0 = all): the boxes are kept in memory, ~3.5 kB per 24 x 24 crop, ~45 per DelftBikes image.
    _C.SOLVER.STATE_REFINE.MAX_IMAGES = 2000
    _C.SOLVER.PLATEAU = CN()
    # ReduceLROnPlateau (LR_SCHEDULER_NAME "ReduceLROnPlateau"): multiply the LR by this factor...
    _C.SOLVER.PLATEAU.FACTOR = 0.5
    # ...after this many evaluations without improvement of the monitored metric.
    _C.SOLVER.PLATEAU.PATIENCE = 3
    # Smallest improvement that counts (relative, as torch's threshold_mode="rel").
    _C.SOLVER.PLATEAU.THRESHOLD = 1e-4
    # Lower bound of the learning rate.
    _C.SOLVER.PLATEAU.MIN_LR = 0.0
    # Metric the plateau scheduler watches (a key of the evaluation results or avg_val_loss).
    _C.SOLVER.PLATEAU.METRIC = "avg_val_loss"
    # "min" when lower is better (losses), "max" when higher is better (AP).
    _C.SOLVER.PLATEAU.MODE = "min"

    # Make cuDNN deterministic (slower); seeding alone does not fix cuDNN's algorithm choice.
    _C.CUDNN_DETERMINISTIC = False

    # ---------------------------------------------------------------- validation, best model
    # Compute the average loss over the validation set at every evaluation (avg_val_loss).
    _C.TEST.VAL_LOSS = True
    _C.TEST.BEST_CHECKPOINT = CN()
    # Metric that picks model_best.pth; e.g. "bbox/AP" with MODE "max".
    _C.TEST.BEST_CHECKPOINT.METRIC = "avg_val_loss"
    # "min" or "max".
    _C.TEST.BEST_CHECKPOINT.MODE = "min"
    # Stop after this many evaluations without improvement of that metric (0: never).
    _C.TEST.EARLY_STOP_PATIENCE = 0

    # ---------------------------------------------------------------- evaluation
    _C.TEST.BIKESTATE = CN()
    # IoU at which a detection matches a ground-truth part (state/* metrics).
    _C.TEST.BIKESTATE.MATCH_IOU = 0.5
    # Detection score below which a part is "not found" (default rule, without thresholds.json).
    _C.TEST.BIKESTATE.VERIFY_SCORE_THRESH = 0.5
    # Operating point of the verdict rule; "" = thresholds.json beside MODEL.WEIGHTS if present.
    _C.TEST.BIKESTATE.THRESHOLDS_FILE = ""
    # Classify every ground-truth box with the state head during evaluation (state_gt/*).
    _C.TEST.BIKESTATE.STATE_ON_GT_BOXES = True
    _C.TEST.BIKESTATE.CALIBRATION = CN()
    # Choose the operating point on DATASETS.TEST[0] at the end of training (thresholds.json).
    _C.TEST.BIKESTATE.CALIBRATION.AFTER_TRAINING = True
    # Share of present parts the presence threshold must keep reported present.
    _C.TEST.BIKESTATE.CALIBRATION.PRESENT_RECALL = 0.95
    # What the state biases maximize on validation data: "macro_f1" or "damage_f1".
    _C.TEST.BIKESTATE.CALIBRATION.OBJECTIVE = "macro_f1"

    # ---------------------------------------------------------------- weights loading
    # Accept pickled (.pkl) weight files from local paths or other URLs (they run code on load).
    _C.MODEL.ALLOW_PICKLED_WEIGHTS = False

    # ---------------------------------------------------------------- Weights & Biases
    _C.WANDB = CN()
    # "auto" (online with credentials, else offline into OUTPUT_DIR), "online", "offline",
    # "disabled".
    _C.WANDB.MODE = "auto"
    # W&B project name.
    _C.WANDB.PROJECT = "bikestate"
    # W&B entity (team or user); "" = the default of the credentials.
    _C.WANDB.ENTITY = ""
    # Run name; "" = W&B's generated name.
    _C.WANDB.NAME = ""
    # Validation images logged with predicted boxes at every evaluation (0: none).
    _C.WANDB.NUM_VIS_IMAGES = 4
    # Upload model_best.pth as a W&B artifact at the end of training.
    _C.WANDB.LOG_CHECKPOINT = False
    return cfg


def merge_config_file(cfg, path):
    """``cfg.merge_from_file(path)`` with every way a user's YAML can be wrong as one
    :class:`~bikestate.utils.errors.ConfigError` naming the file (missing file or ``_BASE_``,
    not YAML, not a mapping, unknown key, wrong value type), instead of a yacs/yaml traceback.
    """
    import yaml

    from .utils.errors import ConfigError

    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}")
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold KEY: value lines, found "
                          f"{'nothing' if content is None else type(content).__name__}")
    try:
        cfg.merge_from_file(path)
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError, OSError,
            yaml.YAMLError) as e:  # a _BASE_ file can be wrong in all the same ways
        raise ConfigError(f"config file {path}: {_merge_error_line(e)}")
    return cfg


def _merge_error_line(error):
    """yacs' merge error as one line (a KeyError's str() would add quotes around its message)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return " ".join(str(message).split())


def apply_data_environment(cfg, environ=None, dotenv_path=".env"):
    """Set the data paths of ``cfg`` from environment variables and a ``.env`` file.

    ``TRAIN_JSON``, ``VAL_JSON``, ``TRAIN_CLEANED``, ``VAL_CLEANED`` and ``OUTPUT_DIR`` set
    ``BIKESTATE.DATA.TRAIN_JSON``, ``VAL_JSON``, ``TRAIN_IMAGES``, ``VAL_IMAGES`` and
    ``OUTPUT_DIR``. Real environment variables win over the ``.env`` file (python-dotenv's
    ``override=False`` rule); empty values count as unset.

    The precedence users get is: command-line config options > environment / ``.env`` >
    config file keys > embedded default (SynthBikes). A tool therefore does::

        cfg = get_cfg(); add_bikestate_config(cfg)
        cfg.merge_from_file(args.config_file)   # config file keys
        apply_data_environment(cfg)             # env / .env override the file
        cfg.merge_from_list(args.opts)          # command line overrides everything

    Args:
        cfg (CfgNode): a config with the bikestate keys; modified in place (even if frozen;
            its frozen state is restored).
        environ (Mapping or None): the environment; ``None`` means ``os.environ``.
        dotenv_path (str or None): ``.env`` file read when it exists; ``None`` skips it.

    Returns:
        dict: ``{config key: (variable name, value)}`` of what was applied (for logging).
    """
    environ = os.environ if environ is None else environ
    values = {}
    if dotenv_path and os.path.isfile(dotenv_path):
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v})
    values.update({k: environ[k] for k in DATA_ENV_VARS if environ.get(k)})

    applied = {}
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    try:
        for var, key in DATA_ENV_VARS.items():
            if not values.get(var):
                continue
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = getattr(node, p)
            setattr(node, leaf, values[var])
            applied[key] = (var, values[var])
    finally:
        if was_frozen:
            cfg.freeze()
    for key, (var, value) in applied.items():
        logging.getLogger(__name__).info(f"{key} = {value} (from {var})")
    return applied


def get_user_config(config_file, opts):
    """A config in the precedence users get from every tool: command-line ``opts`` (KEY VALUE
    list) > environment variables / ``.env`` (:data:`DATA_ENV_VARS`) > ``config_file`` >
    defaults. Returns an unfrozen cfg; bad input is one :class:`ConfigError`."""
    from detectron2.config import get_cfg

    from .utils.errors import ConfigError

    cfg = add_bikestate_config(get_cfg())
    if config_file:
        merge_config_file(cfg, config_file)
    apply_data_environment(cfg)
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as e:
        raise ConfigError(f"command-line options: {_merge_error_line(e)}")
    return cfg
