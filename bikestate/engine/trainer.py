"""``BikeStateTrainer``: detectron2's ``DefaultTrainer`` with what training a bikestate model needs.

Optimizer by config (SGD / AdamW), warmup multi-step / cosine /
ReduceLROnPlateau schedules, epochs, mixed precision on CUDA, gradient accumulation, seeding,
validation loss, best checkpoint, early stopping, W&B, and ``--resume`` that restores every
piece of state (iteration, optimizer, schedulers including the plateau state, best value,
early-stopping counter, random number generators, position in the data order).
"""
import contextlib
import io
import logging
import math
import os
import weakref

import numpy as np
import torch

import detectron2.utils.comm as comm
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import DefaultTrainer, hooks as d2_hooks
from detectron2.engine.defaults import create_ddp_model as d2_create_ddp_model, default_writers
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, verify_results
from detectron2.utils.events import EventStorage
from fvcore.nn.precise_bn import get_bn_modules

from ..checkpoint import (
    TRAINING_FOLDER_WEIGHTS,
    BikeStateCheckpointer,
    TrainingCheckpointer,
    training_folder_weights,
)
from ..constants import STATE_NAMES
from ..data.mapper import (
    BikeStateDatasetMapper,
    SkipUnreadableImages,
    build_annotated_test_loader,
)
from ..data.samplers import ResumableTrainingSampler
from ..utils.io import atomic_open
from ..utils.errors import BikeStateError, ConfigError, DataError
from .hooks import (
    BestCheckpointHook,
    BikeStateEvalHook,
    EarlyStopHook,
    PeriodicWriter,
    PlateauLRHook,
    RetainingPeriodicCheckpointer,
    WandbPredictionImagesHook,
    check_metric_mode,
    compute_validation_loss,
)
from .rng import capture_rng_state, preserve_rng_state, restore_rng_state
from .solver import PLATEAU_NAME, build_lr_scheduler, build_optimizer, check_solver_config
from .state_refinement import StateRefinementHook, check_state_refine_config, refine_state_head
from .train_loop import BikeStateTrainLoop
from .wandb_writer import WandbWriter, resolve_wandb_mode

__all__ = [
    "BikeStateTrainer",
    "create_ddp_model",
    "prepare_training_config",
    "log_device_info",
    "set_cudnn_determinism",
]

logger = logging.getLogger(__name__)


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """detectron2's ``create_ddp_model`` that also serves CPU processes (GLOO).

    detectron2 gives every process its local rank as ``device_ids``, a CUDA device, which
    ``DistributedDataParallel`` rejects for a model on the CPU; there ``device_ids`` is None and
    the fp16 gradient compression (a CUDA communication hook) is off.
    """
    if comm.get_world_size() > 1 and not next(model.parameters()).is_cuda:
        kwargs.setdefault("device_ids", None)
        fp16_compression = False
    return d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


def _count_train_images(cfg):
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    return len(dicts)


def prepare_training_config(cfg):
    """Fill in what depends on the machine and the data; call on an unfrozen cfg after the
    datasets are registered. Returns notices (strings) to log once logging is set up.

    * ``MODEL.DEVICE`` cuda without a GPU -> cpu;
    * ``SOLVER.AMP.ENABLED`` on CPU -> off (AMP here is CUDA mixed precision);
    * ``SOLVER.MAX_EPOCHS`` > 0 -> ``SOLVER.MAX_ITER`` = epochs x ceil(images / (IMS_PER_BATCH x
      GRAD_ACCUM_STEPS)) and, when ``TEST.EVAL_PERIOD`` is 0, one evaluation per
      ``1 / SOLVER.EVALS_PER_EPOCH`` epoch;
    * ``MODEL.ROI_STATE_HEAD.STATE_PRIOR`` empty while the state loss needs it
      (``AUTO_LOSS_WEIGHTS``, ``LOGIT_ADJUST_TAU``) -> the state shares of the training boxes.
    """
    notices = []
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        notices.append("MODEL.DEVICE is cuda but no GPU is available: training on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        notices.append("SOLVER.AMP.ENABLED: mixed precision needs CUDA; it is off on the CPU")
        cfg.SOLVER.AMP.ENABLED = False
    from ..evaluation.calibration import check_calibration_config

    check_state_refine_config(cfg)
    check_calibration_config(cfg)
    check_solver_config(cfg)
    resolve_wandb_mode(cfg.WANDB.MODE)  # an unknown mode is a ConfigError
    check_metric_mode(cfg.TEST.BEST_CHECKPOINT.MODE, "TEST.BEST_CHECKPOINT.MODE")
    if cfg.SOLVER.GRAD_ACCUM_STEPS < 1:
        raise ConfigError(f"SOLVER.GRAD_ACCUM_STEPS must be >= 1, not {cfg.SOLVER.GRAD_ACCUM_STEPS}")
    # register_bike_datasets already generated / converted the data on the main process.
    num_images = _count_train_images(cfg) if cfg.SOLVER.MAX_EPOCHS > 0 else 0
    if cfg.SOLVER.MAX_EPOCHS > 0:
        if num_images == 0:
            raise DataError(f"the training set {', '.join(cfg.DATASETS.TRAIN)} has no images")
        images_per_iter = cfg.SOLVER.IMS_PER_BATCH * cfg.SOLVER.GRAD_ACCUM_STEPS
        iters_per_epoch = max(1, math.ceil(num_images / images_per_iter))
        cfg.SOLVER.MAX_ITER = int(cfg.SOLVER.MAX_EPOCHS * iters_per_epoch)
        if cfg.TEST.EVAL_PERIOD == 0:
            cfg.TEST.EVAL_PERIOD = max(1, iters_per_epoch // max(1, cfg.SOLVER.EVALS_PER_EPOCH))
        notices.append(
            f"{cfg.SOLVER.MAX_EPOCHS} epochs of {num_images} images at {images_per_iter} images "
            f"per update: SOLVER.MAX_ITER={cfg.SOLVER.MAX_ITER}, "
            f"TEST.EVAL_PERIOD={cfg.TEST.EVAL_PERIOD}")
    head = cfg.MODEL.ROI_STATE_HEAD
    if not head.STATE_PRIOR and (head.AUTO_LOSS_WEIGHTS or head.LOGIT_ADJUST_TAU > 0):
        head.STATE_PRIOR = _state_shares(cfg.DATASETS.TRAIN, head.NUM_STATES)
        notices.append("MODEL.ROI_STATE_HEAD.STATE_PRIOR from the training boxes: "
                       + ", ".join(f"{p:.3f}" for p in head.STATE_PRIOR))
    return notices


def _state_shares(dataset_names, num_states):
    """Share of each state among the (non-crowd) annotations of the datasets; a state that
    never occurs counts as half a box, so every share is positive."""
    counts = np.full(num_states, 0.5)
    for name in dataset_names:
        for record in DatasetCatalog.get(name):
            for ann in record.get("annotations", []):
                if not ann.get("iscrowd", 0) and "state" in ann:
                    counts[int(ann["state"])] += 1
    return [float(c) for c in counts / counts.sum()]


def set_cudnn_determinism(cfg):
    """``CUDNN_DETERMINISTIC``: make cuDNN choose deterministic algorithms (slower); seeding
    alone does not fix cuDNN's algorithm choice. Nothing to do when the key is off."""
    if cfg.CUDNN_DETERMINISTIC:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def log_device_info(cfg):
    """Log the device, GPU name, CUDA version, seed and effective batch size."""
    device = cfg.MODEL.DEVICE
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.cuda.current_device()
        logger.info("Device: %s (%s), CUDA %s, cuDNN %s, deterministic cuDNN: %s", device,
                    torch.cuda.get_device_name(index), torch.version.cuda,
                    torch.backends.cudnn.version(), bool(cfg.CUDNN_DETERMINISTIC))
    else:
        logger.info("Device: cpu (%d threads), torch %s; no CUDA", torch.get_num_threads(),
                    torch.__version__)
    logger.info("Seed %d, world size %d, effective batch %d (%d x %d accumulation steps)",
                cfg.SEED, comm.get_world_size(),
                cfg.SOLVER.IMS_PER_BATCH * cfg.SOLVER.GRAD_ACCUM_STEPS,
                cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.GRAD_ACCUM_STEPS)


class BikeStateTrainer(DefaultTrainer):
    """Train a bikestate model, the detectron2 way.

    Hooks, in order: iteration timer, LR scheduler (per iteration; also checkpoints the
    scheduler), PreciseBN (if enabled), state-head refinement after the last iteration (if
    ``SOLVER.STATE_REFINE.EPOCHS``), evaluation + validation loss, plateau LR, best checkpoint,
    early stopping, periodic checkpointer (main), W&B prediction images (main), writers (main:
    console, metrics.json, TensorBoard, W&B).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ is not called: it would build a second model, optimizer and
        # data loader, wrap the model with detectron2's create_ddp_model (which gives CPU
        # processes device_ids, refused by DistributedDataParallel) and make an AMPTrainer /
        # SimpleTrainer, where this trainer needs BikeStateTrainLoop (accumulation, non-finite
        # loss check, skipped images). Everything else is DefaultTrainer's.
        TrainerBase.__init__(self)
        d2_logger = logging.getLogger("detectron2")
        if not d2_logger.isEnabledFor(logging.INFO):
            from detectron2.utils.logger import setup_logger

            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.cfg = cfg
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = BikeStateTrainLoop(
            model, data_loader, optimizer,
            accum_steps=cfg.SOLVER.GRAD_ACCUM_STEPS,
            amp=cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE.startswith("cuda"),
            amp_dtype=getattr(torch, cfg.SOLVER.AMP.PRECISION, torch.float16)
            if hasattr(cfg.SOLVER.AMP, "PRECISION") else torch.float16,
            max_skipped_images=cfg.BIKESTATE.DATA.MAX_SKIPPED_IMAGES,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = TrainingCheckpointer(
            model, cfg.OUTPUT_DIR, allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS,
            trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.stop_reason = None
        self.wandb_writer = None
        self._last_eval_results = None
        self._last_eval_pairs = None  # (iteration, verdict pairs) of the last evaluation
        self._val_loss_loader = None
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ building blocks
    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_mapper(cls, cfg):
        return BikeStateDatasetMapper(cfg, is_train=True)

    @classmethod
    def build_train_loader(cls, cfg, skip_iters=0):
        """Training data loading: shuffled (seeded) order, aspect-ratio grouping,
        ``DATALOADER.NUM_WORKERS`` workers, ``PREFETCH_FACTOR`` batches prefetched per worker,
        pinned memory on CUDA; unreadable images skipped. ``skip_iters`` starts the sampler's
        order where an uninterrupted run's would be after that many iterations: with
        ``NUM_WORKERS`` 0 and without aspect-ratio grouping the batches (and their random
        augmentation) are then the uninterrupted run's; data workers (which deal out the
        order in turns and draw augmentation from their own streams) and aspect-ratio groups
        (whose images wait for a partner of the same shape) give the same images in another
        grouping and augmentation."""
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        mapper = SkipUnreadableImages(cls.build_train_mapper(cfg))
        seed = cfg.SEED if cfg.SEED >= 0 else None
        per_rank_batch = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
        skip = skip_iters * per_rank_batch * cfg.SOLVER.GRAD_ACCUM_STEPS
        kwargs = {"seed": None if seed is None else seed + comm.get_rank()}
        if cfg.DATALOADER.NUM_WORKERS > 0:
            kwargs["prefetch_factor"] = cfg.DATALOADER.PREFETCH_FACTOR
        if cfg.DATALOADER.PIN_MEMORY and cfg.MODEL.DEVICE.startswith("cuda"):
            kwargs["pin_memory"] = True
        if skip and (cfg.DATALOADER.NUM_WORKERS > 0 or cfg.DATALOADER.ASPECT_RATIO_GROUPING):
            logger.info("Resuming the data order at iteration %d: with data workers or "
                        "aspect-ratio grouping the next batches group and augment the images "
                        "differently from an uninterrupted run (DATALOADER.NUM_WORKERS 0 and "
                        "ASPECT_RATIO_GROUPING False repeat it exactly)", skip_iters)
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            if skip:
                logger.warning("%s restarts its order on resume (only TrainingSampler resumes "
                               "at the same position)", cfg.DATALOADER.SAMPLER_TRAIN)
            # detectron2 builds its other samplers (RepeatFactorTrainingSampler, ...) from cfg.
            return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset, **kwargs)
        return build_detection_train_loader(
            dataset=dataset,
            mapper=mapper,
            sampler=ResumableTrainingSampler(len(dataset), seed=seed, skip=skip),
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            **kwargs,
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=BikeStateDatasetMapper(cfg, is_train=False))

    @classmethod
    def build_val_loss_loader(cls, cfg, dataset_name):
        """Validation images with their annotations, mapped like training images but without
        random augmentation (test-time resize only), one image per batch, sharded."""
        return build_annotated_test_loader(
            cfg, get_detection_dataset_dicts([dataset_name], filter_empty=False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None, model=None):
        """``BikeStateEvaluator`` for datasets of evaluator_type "bikestate", COCO for "coco".

        With ``model`` (and ``TEST.BIKESTATE.STATE_ON_GT_BOXES``) the bikestate evaluator also
        scores the state head alone on the ground-truth boxes (``state_gt/*``).
        """
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
        if evaluator_type == "bikestate":
            from ..evaluation import BikeStateEvaluator

            probe = model if cfg.TEST.BIKESTATE.STATE_ON_GT_BOXES else None
            return BikeStateEvaluator(dataset_name, cfg=cfg, distributed=True,
                                      output_dir=output_folder, model=probe)
        if evaluator_type == "coco":
            return COCOEvaluator(dataset_name, output_dir=output_folder)
        raise NotImplementedError(f"no evaluator for dataset {dataset_name!r} "
                                  f"(evaluator_type {evaluator_type!r})")

    @classmethod
    def default_evaluators(cls, cfg, model):
        """One evaluator per ``DATASETS.TEST`` dataset, each also given the model
        (``state_gt``)."""
        return [cls.build_evaluator(cfg, name, model=model) for name in cfg.DATASETS.TEST]

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """``DefaultTrainer.test`` with :meth:`default_evaluators` by default."""
        if evaluators is None:
            evaluators = cls.default_evaluators(cfg, model)
        return super().test(cfg, model, evaluators)

    @classmethod
    def calibrate(cls, cfg, model, output_file, dataset_name=None):
        """Choose the verdict rule's operating point on a dataset and save it as JSON.

        Runs ``model`` on ``dataset_name`` (default ``DATASETS.TEST[0]``), collects the
        (image, part) verdict pairs and chooses the presence threshold and state biases
        (:func:`bikestate.evaluation.choose_operating_point`, settings under
        ``TEST.BIKESTATE.CALIBRATION``). Every process runs the model on its shard; the main
        process writes ``output_file`` (thresholds.json) and, beside it, the ROC and
        precision-recall curves at the chosen point (``calibration_curves.png``).

        Returns:
            (OperatingPoint, dict) on the main process (the point and its figures on the
            dataset); None on the others.
        """
        from ..evaluation import BikeStateEvaluator
        from ..verdict import OperatingPoint

        dataset_name = dataset_name or cfg.DATASETS.TEST[0]
        settings = cfg.TEST.BIKESTATE
        evaluator = BikeStateEvaluator(
            dataset_name, cfg=cfg, distributed=True,
            operating_point=OperatingPoint(settings.VERIFY_SCORE_THRESH))
        # COCOEvaluator's summary tables are about boxes, not this; keep them off the console.
        with contextlib.redirect_stdout(io.StringIO()):
            inference_on_dataset(model, cls.build_test_loader(cfg, dataset_name), evaluator)
        if not comm.is_main_process():
            return None
        return cls.calibrate_on_pairs(cfg, evaluator.pairs, output_file, dataset_name)

    @classmethod
    def calibrate_on_pairs(cls, cfg, pairs, output_file, dataset_name):
        """The second half of :meth:`calibrate`: choose and save the operating point from the
        verdict pairs (:func:`bikestate.evaluation.verdict_pairs`) of ``dataset_name``; the
        same return value."""
        from ..evaluation import choose_operating_point
        from ..evaluation.calibration import apply_operating_point
        from ..evaluation.plots import plot_verification_curves
        from ..verdict import OperatingPoint

        settings = cfg.TEST.BIKESTATE
        state_names = list(MetadataCatalog.get(dataset_name).get("state_classes", STATE_NAMES))
        point, figures = choose_operating_point(
            pairs, state_names, present_recall=settings.CALIBRATION.PRESENT_RECALL,
            objective=settings.CALIBRATION.OBJECTIVE, score_thresh=settings.VERIFY_SCORE_THRESH,
            detection_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
        point.chosen_on["dataset"] = dataset_name
        point.save(output_file, state_names)
        point = OperatingPoint.load(output_file, state_names)
        with atomic_open(os.path.join(os.path.dirname(os.path.abspath(output_file)),
                                      "calibration_curves.png"), "wb") as f:
            plot_verification_curves(apply_operating_point(pairs, point, state_names),
                                     state_names, point, f)
        logger.info("Operating point chosen on %s, saved to %s: %s", dataset_name, output_file,
                    point.describe(state_names))
        return point, figures

    # ------------------------------------------------------------------ hooks and writers
    def _compute_val_loss(self):
        if self._val_loss_loader is None:
            self._val_loss_loader = self.build_val_loss_loader(self.cfg, self.cfg.DATASETS.TEST[0])
        return compute_validation_loss(self.model, self._val_loss_loader, seed=max(self.cfg.SEED, 0))

    def _test_and_save_results(self):
        evaluators = self.default_evaluators(self.cfg, self.model)
        self._last_eval_results = self.test(self.cfg, self.model, evaluators)
        # The verdict pairs of DATASETS.TEST[0] at this iteration, for calibrate_best_model. In
        # one process only: elsewhere the pairs live on the main process alone, and every
        # process must take the same route through the collective inference.
        pairs = getattr(evaluators[0], "pairs", None) if evaluators else None
        self._last_eval_pairs = (self.iter, pairs) \
            if pairs is not None and comm.get_world_size() == 1 else None
        if self.wandb_writer is not None and comm.is_main_process():
            from ..evaluation.evaluator import FIGURES

            folder = os.path.join(self.cfg.OUTPUT_DIR, "inference")
            self.wandb_writer.log_figures(self.iter, {
                f"eval/{os.path.splitext(name)[0]}": os.path.join(folder, name)
                for name in FIGURES if os.path.isfile(os.path.join(folder, name))})
        return self._last_eval_results

    def _refine_state_head(self):
        """The refinement stage run by :class:`StateRefinementHook` after the last iteration."""
        return refine_state_head(self.cfg, self.model)

    def build_hooks(self):
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # save some memory and time for PreciseBN
        period = cfg.TEST.EVAL_PERIOD
        has_val = len(cfg.DATASETS.TEST) > 0
        refine = cfg.SOLVER.STATE_REFINE.EPOCHS > 0
        if refine:
            check_state_refine_config(cfg)
        ret = [
            d2_hooks.IterationTimer(),
            d2_hooks.LRScheduler(),
            d2_hooks.PreciseBN(
                period, self.model, self.build_train_loader(cfg), cfg.TEST.PRECISE_BN.NUM_ITER)
            if cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(self.model) else None,
            StateRefinementHook(self._refine_state_head) if refine else None,
            BikeStateEvalHook(
                period,
                self._test_and_save_results if has_val else None,
                self._compute_val_loss if has_val and cfg.TEST.VAL_LOSS else None,
            ),
        ]
        if cfg.SOLVER.LR_SCHEDULER_NAME == PLATEAU_NAME:
            ret.append(PlateauLRHook(cfg.SOLVER.PLATEAU.METRIC, period))
        best = cfg.TEST.BEST_CHECKPOINT
        if best.METRIC:
            ret.append(BestCheckpointHook(
                best.METRIC, best.MODE, period,
                checkpointer=self.checkpointer if comm.is_main_process() else None))
        if cfg.TEST.EARLY_STOP_PATIENCE > 0:
            ret.append(EarlyStopHook(best.METRIC, best.MODE, cfg.TEST.EARLY_STOP_PATIENCE, period))
        if comm.is_main_process():
            self.periodic_checkpointer = RetainingPeriodicCheckpointer(
                self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.SOLVER.MAX_TO_KEEP)
            ret.append(self.periodic_checkpointer)
            writers = self.build_writers()
            if self.wandb_writer is not None and has_val and cfg.WANDB.NUM_VIS_IMAGES > 0:
                ret.append(WandbPredictionImagesHook(
                    self.wandb_writer, self._vis_inputs, period))
            ret.append(PeriodicWriter(writers, period=20, eval_period=period))
        return ret

    def build_writers(self):
        """detectron2's console, ``metrics.json`` and TensorBoard writers, plus W&B."""
        writers = default_writers(self.cfg.OUTPUT_DIR, self.max_iter)
        if self.cfg.WANDB.MODE != "disabled":
            names = self._class_names()
            self.wandb_writer = WandbWriter(self.cfg, class_names=names, state_names=STATE_NAMES,
                                            start=False)
            writers.append(self.wandb_writer)
        return writers

    def _class_names(self):
        names = self.cfg.DATASETS.TEST or self.cfg.DATASETS.TRAIN
        return list(getattr(MetadataCatalog.get(names[0]), "thing_classes", [])) if names else []

    def _vis_inputs(self):
        """The first ``WANDB.NUM_VIS_IMAGES`` validation images: model inputs and originals."""
        from detectron2.data import detection_utils as utils

        name = self.cfg.DATASETS.TEST[0]
        dicts = DatasetCatalog.get(name)[: self.cfg.WANDB.NUM_VIS_IMAGES]
        mapper = BikeStateDatasetMapper(self.cfg, is_train=False)
        inputs, originals = [], []
        for d in dicts:
            try:
                image = utils.read_image(d["file_name"], format="RGB")
                inputs.append(mapper(dict(d)))
            except Exception as e:  # an unreadable image is not worth a warning per evaluation
                logger.warning("W&B images: skipping %s: %s", d.get("file_name"), e)
                continue
            originals.append((image, d))
        return inputs, originals

    # ------------------------------------------------------------------ resume, state, loop
    def resume_or_load(self, resume=True):
        """Resume from ``OUTPUT_DIR/last_checkpoint`` (everything, including the data order) or
        load ``MODEL.WEIGHTS`` (weights only) and start at iteration 0."""
        if comm.is_main_process():
            self.checkpointer.remove_stale_temp_files()
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            if self.wandb_writer is not None:
                self.wandb_writer.resume = True
            logger.info("Resumed from %s: continuing at iteration %d",
                        self.checkpointer.get_checkpoint_file(), self.start_iter)
        if self.start_iter > 0:
            self._trainer.reset_data_loader(
                lambda: self.build_train_loader(self.cfg, skip_iters=self.start_iter))

    def state_dict(self):
        ret = super().state_dict()
        ret["stop_reason"] = self.stop_reason
        ret["rng"] = capture_rng_state()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.stop_reason = state_dict.get("stop_reason")
        # Per-process streams cannot be restored from the main process's checkpoint.
        if "rng" in state_dict and comm.get_world_size() == 1:
            restore_rng_state(state_dict["rng"])

    def request_stop(self, reason):
        """Ask the loop to end after the current iteration's hooks (early stopping)."""
        self.stop_reason = reason

    def train(self):
        """Run training; return the last evaluation results (dict) or None."""
        if self.stop_reason:
            logger.info("This run already ended (%s); nothing to do.", self.stop_reason)
            return self._last_eval_results
        if self.start_iter >= self.max_iter:
            logger.info("This run already reached SOLVER.MAX_ITER=%d; nothing to do.",
                        self.max_iter)
            return self._last_eval_results
        set_cudnn_determinism(self.cfg)
        log_device_info(self.cfg)
        if self.wandb_writer is not None:
            with preserve_rng_state():
                self.wandb_writer.start()
        self._run_loop(self.start_iter, self.max_iter)
        if not self.stop_reason:
            self._refine_earlier_best_weights()
        if self.cfg.TEST.BIKESTATE.CALIBRATION.AFTER_TRAINING and len(self.cfg.DATASETS.TEST):
            self.calibrate_best_model()
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            verify_results(self.cfg, self._last_eval_results)
        return self._last_eval_results

    def _best_checkpoint_hook(self):
        best = [h for h in self._hooks if isinstance(h, BestCheckpointHook)]
        return best[0] if best else None

    def _resave_best_weights(self, model):
        """Write ``model``'s weights as ``model_best.pth`` with the best evaluation's
        iteration and value (main process)."""
        best = self._best_checkpoint_hook()
        if comm.is_main_process():
            TrainingCheckpointer(model, self.cfg.OUTPUT_DIR).save_weights_only(
                "model_best", iteration=best.best_iter, best_metric=best.metric,
                best_value=best.best_value)
        comm.synchronize()

    def _refine_earlier_best_weights(self):
        """Refine the state head of ``model_best.pth`` too when an evaluation before the last
        iteration was the best: the refinement hook refined the last iteration's weights, and
        the calibration, ``tools/predict.py`` and the service load the best ones. The best
        file keeps its iteration and value (measured before its refinement)."""
        best = self._best_checkpoint_hook()
        path = os.path.join(self.cfg.OUTPUT_DIR, "model_best.pth")
        if self.cfg.SOLVER.STATE_REFINE.EPOCHS == 0 or best is None or \
                best.best_iter in (None, self.iter - 1):
            return
        comm.synchronize()
        if not os.path.isfile(path):
            return
        logger.info("The best evaluation was at iteration %d, before the last: refining the "
                    "state head of %s as well", best.best_iter, path)
        model = self.build_model(self.cfg)
        BikeStateCheckpointer(model).load(path)
        refine_state_head(self.cfg, model)
        self._resave_best_weights(model)

    def calibrate_best_model(self):
        """Choose the operating point of ``model_best.pth`` (else ``model_final.pth``) on the
        validation set and save it beside the weights as thresholds.json, where the predictor,
        the report and ``--eval-only`` find it."""
        from ..verdict import THRESHOLDS_FILE

        comm.synchronize()
        weights = training_folder_weights(self.cfg.OUTPUT_DIR)
        if weights is None:
            logger.warning("No %s in %s: not calibrated", " or ".join(TRAINING_FOLDER_WEIGHTS),
                           self.cfg.OUTPUT_DIR)
            return None
        output_file = os.path.join(self.cfg.OUTPUT_DIR, THRESHOLDS_FILE)
        iteration = self._iteration_of(weights)
        if self._last_eval_pairs is not None and self._last_eval_pairs[0] == iteration:
            # The last evaluation ran these very weights over the validation set: reuse it.
            logger.info("Calibrating %s on the evaluation of iteration %d", weights, iteration)
            return self.calibrate_on_pairs(self.cfg, self._last_eval_pairs[1], output_file,
                                           self.cfg.DATASETS.TEST[0])
        model = self.build_model(self.cfg)
        BikeStateCheckpointer(model).load(weights)
        return self.calibrate(self.cfg, model, output_file)

    def _iteration_of(self, weights):
        """The iteration whose weights ``weights`` (of this run's folder) holds, if known."""
        name = os.path.basename(weights)
        if name == "model_best.pth":
            best = self._best_checkpoint_hook()
            return best.best_iter if best else None
        if name == "model_final.pth" and not self.stop_reason:
            return self.iter - 1  # the loop leaves self.iter one past the last iteration
        return None

    def _run_loop(self, start_iter, max_iter):
        """``TrainerBase.train`` plus early stopping and a clean, single-message failure.

        detectron2's loop runs to ``max_iter`` or an exception; stopping early (EarlyStopHook)
        and marking the W&B run failed need this copy of it."""
        self.iter = self.start_iter = start_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    if self.stop_reason:
                        logger.info("Stopping at iteration %d: %s", self.iter, self.stop_reason)
                        self._finish_early_stop()
                        break
                self.iter += 1
            except BikeStateError as e:
                logger.error("%s", e)
                self._mark_failed()
                raise
            except Exception:
                logger.exception("Exception during training:")
                self._mark_failed()
                raise
            finally:
                self.after_train()

    def _mark_failed(self):
        if self.wandb_writer is not None:
            self.wandb_writer.mark_failed()

    def _finish_early_stop(self):
        """Make the best weights the result: load ``model_best.pth`` everywhere and save them as
        ``model_final.pth`` (which also records that this run is finished)."""
        comm.synchronize()
        best = os.path.join(self.cfg.OUTPUT_DIR, "model_best.pth")
        if os.path.isfile(best):
            self.checkpointer.load(best, checkpointables=[])
            logger.info("Early stopping: loaded the best weights from %s", best)
        if self.cfg.SOLVER.STATE_REFINE.EPOCHS > 0:
            # The refinement hook runs after the last iteration, which an early stop never
            # reaches: refine the best weights here, before they become model_final.pth.
            refine_state_head(self.cfg, self.model)
            if os.path.isfile(best) and self._best_checkpoint_hook() is not None:
                self._resave_best_weights(self.model)
        if comm.is_main_process():
            self.periodic_checkpointer.save_final()
        comm.synchronize()
