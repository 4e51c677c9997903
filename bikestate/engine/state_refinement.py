"""State-head refinement on the detector's own boxes, a short second stage after training.

In training the state head learns from the sampled proposals and the annotated boxes
(``MODEL.ROI_STATE_HEAD.TRAIN_ON``); at test time it judges the detector's final boxes, which sit
differently on the parts (regressed, one per part after NMS, often a little off). With
``SOLVER.STATE_REFINE.EPOCHS`` > 0 training ends with this stage (:class:`StateRefinementHook`,
after the last iteration and before its evaluation):

1. the detector, frozen, runs once over the training images at the test-time size;
2. every detection whose box matches an annotated box of its own part (IoU >=
   ``MATCH_IOU``) becomes an example with that box's state, conditioned on the detection's
   class; with ``GT_BOXES`` the annotated boxes join them (:func:`collect_state_examples`);
3. the state head alone trains on these inputs for ``EPOCHS`` passes (AdamW at ``BASE_LR``,
   cosine to 0, the state loss of training; pooled boxes mirrored at random with ``FLIP``)
   (:func:`fit_state_head`).

The inputs are pooled once and kept (float16), so an epoch costs the state head's forward and
backward only: about 4 s for the demo's 400 pictures (~9,000 detections; 7 s with the annotated
boxes) on 2 CPU cores, after one detector pass over them (~30 s). Boxes, classes and scores of
the detector do not change; the states do. For a head on the box head's features
(``MLPStateHead``) the examples are the box head's features of the final boxes, while inference
reads those of the proposals the detections came from: close, not the same.
"""
import logging
import math
import time
from dataclasses import dataclass
from typing import List

import numpy as np
import torch

import detectron2.utils.comm as comm
from detectron2.data import get_detection_dataset_dicts
from detectron2.engine.hooks import HookBase
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.logger import log_every_n_seconds

from ..data.mapper import SKIPPED_KEY, build_annotated_test_loader
from ..modeling.roi_heads import IMAGE_FEATURE
from ..modeling.state_head import state_loss
from ..utils.errors import ConfigError
from .hooks import unwrap_model
from .rng import preserve_rng_state

__all__ = ["StateExamples", "check_state_refine_config", "build_refinement_loader",
           "collect_state_examples", "fit_state_head", "refine_state_head",
           "StateRefinementHook"]

logger = logging.getLogger(__name__)


@dataclass
class StateExamples:
    """The state head's inputs with their labels, one row per box.

    Attributes:
        inputs: (N, C, P, P) pooled boxes, or (N, D) box-head features for a head on them;
            float16 on the CPU (a 3 x 24 x 24 crop takes 3.5 kB).
        classes: (N,) int64 part class the head is conditioned on: the detection's predicted
            class, or the annotation's.
        states: (N,) int64 ground-truth state.
        from_detections: (N,) bool, True for a detection's box, False for an annotated box.
    """

    inputs: torch.Tensor
    classes: torch.Tensor
    states: torch.Tensor
    from_detections: torch.Tensor

    def __len__(self):
        return len(self.states)

    @staticmethod
    def cat(parts: List["StateExamples"]) -> "StateExamples":
        parts = [p for p in parts if len(p)] or parts[:1]
        return StateExamples(*(torch.cat([getattr(p, name) for p in parts]) for name in
                               ("inputs", "classes", "states", "from_detections")))


def check_state_refine_config(cfg):
    """One :class:`ConfigError` for a bad ``SOLVER.STATE_REFINE`` key, or for a refinement of
    ROI heads without a state head."""
    s = cfg.SOLVER.STATE_REFINE
    checks = [("EPOCHS", s.EPOCHS >= 0, ">= 0 (0: no refinement)"),
              ("BASE_LR", s.BASE_LR > 0, "> 0"),
              ("BATCH_SIZE", s.BATCH_SIZE > 0, "> 0"),
              ("MATCH_IOU", 0 < s.MATCH_IOU <= 1, "in (0, 1]"),
              ("MAX_IMAGES", s.MAX_IMAGES >= 0, ">= 0 (0: every training image)")]
    for key, ok, rule in checks:
        if not ok:
            raise ConfigError(f"SOLVER.STATE_REFINE.{key} must be {rule}, got "
                              f"{getattr(s, key)}")
    heads = cfg.MODEL.ROI_HEADS.NAME
    if s.EPOCHS > 0 and heads in ROI_HEADS_REGISTRY and \
            not hasattr(ROI_HEADS_REGISTRY.get(heads), "state_inputs"):
        raise ConfigError(f"SOLVER.STATE_REFINE.EPOCHS is {s.EPOCHS}, but MODEL.ROI_HEADS.NAME "
                          f"{heads} has no state head to refine: set it to 0")


def build_refinement_loader(cfg):
    """The training images (``DATASETS.TRAIN``; at most ``SOLVER.STATE_REFINE.MAX_IMAGES`` of
    them, a subset drawn with ``SEED``) with their annotations, at the test-time size, one per
    batch, sharded over the processes; an unreadable image is skipped with a warning, as in
    training (the loader then yields another image twice; the examples count it once)."""
    dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
    limit = cfg.SOLVER.STATE_REFINE.MAX_IMAGES
    if 0 < limit < len(dataset):
        rng = np.random.default_rng(max(cfg.SEED, 0))
        dataset = [dataset[i] for i in sorted(rng.choice(len(dataset), limit, replace=False))]
    return build_annotated_test_loader(cfg, dataset, skip_unreadable=True)


def _matched_detections(detections, targets, match_iou):
    """(D,) bool: detections whose box has IoU >= ``match_iou`` with an annotated box of their
    own class, and (D,) the row of that box (the best such one) in ``targets``."""
    if len(detections) == 0 or len(targets) == 0:
        none = torch.zeros(len(detections), dtype=torch.bool, device=detections.scores.device)
        return none, torch.zeros(len(detections), dtype=torch.int64, device=none.device)
    iou = pairwise_iou(detections.pred_boxes, targets.gt_boxes)  # (D, G)
    same_part = detections.pred_classes[:, None] == targets.gt_classes[None, :]
    best_iou, best = torch.where(same_part, iou, torch.full_like(iou, -1.0)).max(dim=1)
    return best_iou >= match_iou, best


def _image_key(dataset_dict):
    """What identifies an image of the loader: its id, else its file."""
    return dataset_dict.get("image_id", dataset_dict.get("file_name"))


@torch.no_grad()
def collect_state_examples(model, data_loader, match_iou=0.5, gt_boxes=True) -> StateExamples:
    """The state head's inputs for the detector's matched boxes (and the annotated boxes) of
    every image of ``data_loader``, on this process.

    Args:
        model: a detectron2 ``GeneralizedRCNN`` with bikestate's ``StateROIHeads`` (DDP-wrapped
            or not); run in inference mode, its training mode restored afterwards.
        data_loader: yields lists of mapped dicts with ``image`` and ``instances``
            (``gt_boxes``, ``gt_classes``, ``gt_states`` in the resized image's coordinates).
        match_iou: a detection is kept, with the state of the annotated box of its class it
            overlaps most, when that IoU is at least this.
        gt_boxes: add every annotated box with its class and state.

    Returns:
        StateExamples, or None when ``data_loader`` yields no image (a process whose shard is
        empty). An image the loader yields twice (detectron2's ``MapDataset`` stands another
        image in for one it cannot read) gives its examples once.
    """
    module = unwrap_model(model)
    heads = module.roi_heads
    was_training = module.training
    module.eval()
    parts, total, start = [], len(data_loader), time.perf_counter()
    seen = set()
    try:
        for k, batch in enumerate(data_loader):
            batch = [dict(d) for d in batch]
            for d in batch:
                d.pop(SKIPPED_KEY, None)
            batch = [d for d in batch if _image_key(d) not in seen]
            seen.update(_image_key(d) for d in batch)
            if not batch:
                continue
            images = module.preprocess_image(batch)
            features = module.backbone(images.tensor)
            proposals, _ = module.proposal_generator(images, features, None)
            detections, _ = heads(images, features, proposals)
            features = dict(features, **{IMAGE_FEATURE: images.tensor})
            boxes, classes, states, from_detections = [], [], [], []
            for inputs, found in zip(batch, detections):
                targets = inputs["instances"].to(found.scores.device)
                keep, rows = _matched_detections(found, targets, match_iou)
                image_boxes = [found.pred_boxes.tensor[keep]]
                classes += [found.pred_classes[keep]]
                states += [targets.gt_states[rows[keep]]]
                from_detections += [torch.ones(int(keep.sum()), dtype=torch.bool)]
                if gt_boxes:
                    image_boxes.append(targets.gt_boxes.tensor)
                    classes.append(targets.gt_classes)
                    states.append(targets.gt_states)
                    from_detections.append(torch.zeros(len(targets), dtype=torch.bool))
                boxes.append(Boxes(torch.cat(image_boxes)))
            parts.append(StateExamples(
                heads.state_inputs(features, boxes).to("cpu", torch.float16),
                torch.cat(classes).cpu(), torch.cat(states).cpu(), torch.cat(from_detections)))
            log_every_n_seconds(
                logging.INFO, f"State refinement: boxes of {k + 1}/{total} training images "
                f"collected ({time.perf_counter() - start:.0f} s)", n=10, name=__name__)
    finally:
        module.train(was_training)
    return StateExamples.cat(parts) if parts else None


def fit_state_head(roi_heads, examples: StateExamples, *, epochs, base_lr, weight_decay=0.0,
                   batch_size=256, flip=True, seed=0) -> List[float]:
    """Train ``roi_heads.state_head`` alone on ``examples``; return the mean loss of each epoch.

    AdamW at ``base_lr`` with a cosine schedule to 0 over all steps; the loss is the state loss
    of training (``roi_heads``' per-state weights, focal gamma and logit adjustment). With
    ``flip`` each pooled box (4-d input) is mirrored left-right with probability 1/2 per step;
    feature vectors are used as they are. Shuffling and mirroring draw from ``seed``.
    """
    head = roi_heads.state_head
    device = next(head.parameters()).device
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad],
                                  lr=base_lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(examples) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))))
    generator = torch.Generator().manual_seed(seed)
    was_training = head.training
    head.train()
    losses = []
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(examples), generator=generator)
            total = 0.0
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                inputs = examples.inputs[rows].to(device, torch.float32)
                if flip and inputs.dim() == 4:
                    mirrored = torch.rand(len(rows), generator=generator) < 0.5
                    inputs[mirrored.to(device)] = inputs[mirrored.to(device)].flip(3)
                logits = head(inputs, examples.classes[rows].to(device))
                loss = state_loss(logits, examples.states[rows].to(device),
                                  roi_heads.state_class_weights, roi_heads.state_focal_gamma,
                                  roi_heads.state_logit_adjustment)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(rows)
            losses.append(total / max(len(examples), 1))
            logger.info("State refinement: epoch %d/%d, loss_state %.4f", epoch + 1, epochs,
                        losses[-1])
    finally:
        head.train(was_training)
    return losses


def refine_state_head(cfg, model):
    """Run the refinement stage of ``SOLVER.STATE_REFINE`` on ``model`` (module docstring).

    Every process collects the examples of its shard of the training images; all of them train
    on the union with the same seed, and the main process's weights are broadcast so that every
    replica ends identical.

    Returns:
        dict of numbers: ``examples``, ``detections`` (examples from detections), ``loss_first``
        and ``loss_last`` (mean loss of the first and last epoch; absent when there was nothing
        to train on), ``seconds``.
    """
    settings = cfg.SOLVER.STATE_REFINE
    heads = unwrap_model(model).roi_heads
    if not hasattr(heads, "state_inputs"):
        raise ConfigError("SOLVER.STATE_REFINE.EPOCHS > 0 needs a model with a state head "
                          f"(bikestate's StateROIHeads); {type(heads).__name__} has none")
    start = time.perf_counter()
    if settings.EPOCHS == 0:
        return {"examples": 0, "detections": 0, "seconds": 0.0}
    local = collect_state_examples(model, build_refinement_loader(cfg), settings.MATCH_IOU,
                                   settings.GT_BOXES)
    # Every process decides on the union: a process whose shard is empty must not stop alone
    # while the others wait for it in the collective.
    parts = comm.all_gather(local) if comm.get_world_size() > 1 else [local]
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("no training images to refine the state head on")
    examples = StateExamples.cat(parts)
    if len(examples) == 0:
        logger.warning("State refinement: the detector found no box on an annotated part of its "
                       "class in the training images; the state head is left as it is")
        return {"examples": 0, "detections": 0, "seconds": time.perf_counter() - start}
    logger.info("State refinement: %d boxes (%d from detections), %.0f s; training the state "
                "head for %d epochs", len(examples), int(examples.from_detections.sum()),
                time.perf_counter() - start, settings.EPOCHS)
    with preserve_rng_state():
        torch.manual_seed(max(cfg.SEED, 0))  # the head's dropout
        losses = fit_state_head(heads, examples, epochs=settings.EPOCHS,
                                base_lr=settings.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                                batch_size=settings.BATCH_SIZE, flip=settings.FLIP,
                                seed=max(cfg.SEED, 0))
    if comm.get_world_size() > 1:
        for tensor in list(heads.state_head.parameters()) + list(heads.state_head.buffers()):
            torch.distributed.broadcast(tensor.data, src=0)
    seconds = time.perf_counter() - start
    logger.info("State refinement done in %.0f s", seconds)
    return {"examples": len(examples), "detections": int(examples.from_detections.sum()),
            "loss_first": losses[0], "loss_last": losses[-1], "seconds": seconds}


class StateRefinementHook(HookBase):
    """Refine the state head after the last iteration (:func:`refine_state_head`).

    It comes before :class:`~bikestate.engine.hooks.BikeStateEvalHook` in the trainer's hooks,
    so the last evaluation, ``model_final.pth`` and, when the last evaluation is the best,
    ``model_best.pth`` see the refined head. Its figures go into the event storage as
    ``state_refine/*``. The trainer refines an earlier best checkpoint after training, and the
    best weights of a run that stops early, itself.
    """

    def __init__(self, refine_function):
        """
        Args:
            refine_function: called without arguments; returns a dict of numbers.
        """
        self._refine = refine_function

    def after_step(self):
        if self.trainer.iter + 1 < self.trainer.max_iter:
            return
        figures = self._refine()
        for name, value in figures.items():
            self.trainer.storage.put_scalar(f"state_refine/{name}", value, smoothing_hint=False)
