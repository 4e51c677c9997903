"""The seed pipeline's model and training loop (torchvision), reimplemented for comparison only.

This is *not* part of bikestate: it is what the seed notebook (``shared/seed/000_*.txt``, steps 4
to 7) builds, so the benchmarks can put bikestate side by side with it on the same data.

What the seed says, and what is done here:

* Data (step 4): ``BikePartsDataset`` reads a COCO-with-states file, loads each image with PIL
  (RGB), ``ToTensor``; target ``boxes`` (xywh -> xyxy, float32), ``labels`` (the COCO category
  ids, 1..22; 0 is torchvision's background), ``states`` (int64) and ``image_id``; an image
  without annotations gets empty (0, 4) boxes. ``collate_fn`` returns ``tuple(zip(*batch))``.
  Loaders: batch 2, shuffled training set, 2 workers, pinned memory on CUDA, prefetch factor 2.
* Model (step 5): torchvision ``fasterrcnn_resnet50_fpn`` with ``FastRCNNPredictor(1024,
  num_parts + 1)`` and the state head ``Linear(1024, 256) -> ReLU -> Dropout(0.2) ->
  Linear(256, 4)``. Weights: ``"DEFAULT"`` (COCO) as in the seed when they can be had
  (``weights="auto"`` tries them and falls back to random init); ``None`` trains from scratch,
  with torchvision's from-scratch choices (trainable BatchNorm, all backbone stages trainable).
  ``norm`` / ``trainable_layers`` override those choices: ``norm="frozen_bn"`` with stages 3-5
  trainable is what the speed benchmark uses (as bikestate's R50-FPN config does);
  ``norm="gn"`` puts GroupNorm (32 groups) in the ResNet and the FPN, detectron2's
  from-scratch recipe (``scratch_*_gn`` configs), which the accuracy benchmark uses because
  BatchNorm statistics of batches of 2 are noisy.
* "Extracts ROI features from detected regions" (the vague step). Reading taken: the state
  head is trained on the **ground-truth boxes** of each image (every annotated part has a state;
  absent parts have a box at their expected place), pooled with the detector's own
  ``box_roi_pool`` + ``box_head`` (the 1024-d TwoMLPHead features the box predictor sees) from
  the FPN features of the same forward pass, with the boxes scaled as the model's transform
  scaled the image. One backbone pass per step: ``forward`` mirrors
  ``GeneralizedRCNN.forward`` to keep hold of the features (``reuse_features=False`` instead
  calls the base model for its losses and runs transform + backbone a second time for the
  state features, the most literal reading of "calls the base model, then extracts ROI
  features"; it is much slower and not used by the benchmarks).
  Loss: detection losses + 0.5 x cross-entropy of the states.
* Evaluation-mode ``forward`` returns torchvision's detections, as in the seed. For the accuracy
  comparison :meth:`MultiTaskFasterRCNN.predict` also gives every detection a state: its
  (resized-image) box is pooled through the same ``box_roi_pool`` + ``box_head`` + state head
  (``states``, ``state_scores`` softmax rows); :func:`to_instances` turns that into detectron2
  ``Instances`` for ``BikeStateEvaluator``.
* Training (step 6): no augmentation (``ToTensor``, then the model's resize to ``min_size`` /
  ``max_size``); AdamW (lr 1e-4, weight decay 1e-4) on the trainable parameters, no warm-up,
  ``ReduceLROnPlateau(mode="min", factor=0.5, patience=3)`` stepped once per epoch on the
  validation loss, AMP with ``GradScaler`` on CUDA only, best checkpoint by validation loss
  (``fasterrcnn_multitask_best.pth``), seed 42. The validation loss needs training mode
  (torchvision returns losses only then); it is computed under ``no_grad`` with BatchNorm and
  Dropout layers in inference mode, so validation images do not change BatchNorm statistics.
  W&B logging is left out (the benchmarks time training, not logging); the seed's metric names
  are kept in the returned history, with the number of images each epoch trained on, counted
  batch by batch (``images``).
"""
import json
import logging
import math
import os
import random
import time
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "BikePartsDataset",
    "collate_fn",
    "build_data_loaders",
    "MultiTaskFasterRCNN",
    "build_seed_model",
    "build_optimizer",
    "train_step",
    "seed_everything",
    "train_one_epoch",
    "validation_loss",
    "fit",
    "to_instances",
    "evaluate_with_bikestate",
]

# Loss names as the seed logs them (train_loss_<name>).
DETECTION_LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
BEST_CHECKPOINT = "fasterrcnn_multitask_best.pth"


# ------------------------------------------------------------------------------ data (step 4)


class BikePartsDataset(torch.utils.data.Dataset):
    """The seed's dataset: images and targets from a COCO-with-states file.

    Item: ``(image, target)`` with ``image`` a float tensor (3, H, W) in [0, 1] (RGB) and
    ``target`` ``{"boxes": (N, 4) float32 xyxy, "labels": (N,) int64 category ids,
    "states": (N,) int64, "image_id": int64 scalar tensor}``.
    """

    def __init__(self, coco_json, images_dir, transforms=None):
        with open(coco_json, encoding="utf-8") as f:
            coco = json.load(f)
        self.images_dir = images_dir
        self.images = coco["images"]
        self.categories = coco["categories"]
        self.img_id_to_anns = defaultdict(list)
        for ann in coco["annotations"]:
            self.img_id_to_anns[ann["image_id"]].append(ann)
        self.transforms = transforms

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        info = self.images[index]
        image = Image.open(os.path.join(self.images_dir, info["file_name"])).convert("RGB")
        anns = self.img_id_to_anns.get(info["id"], [])
        if anns:
            boxes = torch.tensor(
                [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=torch.float32)
            labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
            states = torch.tensor([a["state"] for a in anns], dtype=torch.int64)
        else:  # the seed's edge case: an image without annotations
            boxes = torch.zeros((0, 4), dtype=torch.float32)
            labels = torch.zeros((0,), dtype=torch.int64)
            states = torch.zeros((0,), dtype=torch.int64)
        target = {"boxes": boxes, "labels": labels, "states": states,
                  "image_id": torch.tensor(info["id"], dtype=torch.int64)}
        if self.transforms is not None:
            image = self.transforms(image)
        else:
            import torchvision.transforms.functional as TF

            image = TF.to_tensor(image)
        return image, target


def collate_fn(batch):
    """Variable-size images and targets: a tuple of images and a tuple of targets."""
    return tuple(zip(*batch))


def build_data_loaders(train_json, train_images, val_json, val_images, batch_size=2,
                       num_workers=2, device="cpu", seed=42):
    """The seed's training and validation loaders (shuffle only for training)."""
    kwargs = {"batch_size": batch_size, "num_workers": num_workers, "collate_fn": collate_fn,
              "pin_memory": str(device).startswith("cuda")}
    if num_workers > 0:
        kwargs["prefetch_factor"] = 2
    generator = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(BikePartsDataset(train_json, train_images), shuffle=True,
                                        generator=generator, **kwargs)
    val = torch.utils.data.DataLoader(BikePartsDataset(val_json, val_images), shuffle=False,
                                      **kwargs)
    return train, val


# ------------------------------------------------------------------------------ model (step 5)


class MultiTaskFasterRCNN(nn.Module):
    """torchvision Faster R-CNN R50-FPN with the seed's state head (see the module docstring).

    ``forward(images, targets)`` in training mode returns ``(total_loss, loss_dict)`` with the
    four detection losses and ``loss_state`` (unweighted); ``total = detection + 0.5 x state``.
    In evaluation mode it returns torchvision's detections (list of dicts ``boxes``, ``labels``,
    ``scores``). :meth:`predict` adds ``states`` (R,) and ``state_scores`` (R, 4).
    """

    def __init__(self, base_model, num_states=4, state_loss_weight=0.5, reuse_features=True):
        super().__init__()
        self.base_model = base_model
        in_features = base_model.roi_heads.box_predictor.cls_score.in_features  # 1024
        self.state_head = nn.Sequential(
            nn.Linear(in_features, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, num_states))
        self.state_loss_weight = state_loss_weight
        self.reuse_features = reuse_features

    # -------------------------------------------------------------- internals
    def _base_forward(self, images, targets=None):
        """``GeneralizedRCNN.forward`` keeping the features and the transformed targets.

        Returns (losses, detections before postprocess, features, image sizes, resized targets,
        original sizes).
        """
        base = self.base_model
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        image_list, targets = base.transform(images, targets)
        if targets is not None:
            for i, t in enumerate(targets):
                degenerate = t["boxes"][:, 2:] <= t["boxes"][:, :2]
                if degenerate.any():
                    raise ValueError(f"image {i} of the batch has a box with no width or height: "
                                     f"{t['boxes'][degenerate.any(dim=1)][0].tolist()}")
        features = base.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = base.rpn(image_list, features, targets)
        detections, detector_losses = base.roi_heads(features, proposals,
                                                     image_list.image_sizes, targets)
        losses = {**detector_losses, **proposal_losses}
        return losses, detections, features, image_list.image_sizes, targets, original_sizes

    def _state_logits(self, features, boxes, image_sizes):
        """(sum R_i, 4) state logits of ``boxes`` (list of (R_i, 4), resized-image coords)."""
        roi = self.base_model.roi_heads
        box_features = roi.box_head(roi.box_roi_pool(features, boxes, image_sizes))
        return self.state_head(box_features)

    # -------------------------------------------------------------- forward
    def forward(self, images, targets=None):
        if not self.training:
            return self.base_model(images)
        if self.reuse_features:
            losses, _, features, image_sizes, resized_targets, _ = self._base_forward(
                images, targets)
        else:  # the literal reading: the base model's losses, then a second feature pass
            losses = self.base_model(images, targets)
            image_list, resized_targets = self.base_model.transform(images, targets)
            features = self.base_model.backbone(image_list.tensors)
            image_sizes = image_list.image_sizes
        logits = self._state_logits(features, [t["boxes"] for t in resized_targets], image_sizes)
        gt_states = torch.cat([t["states"] for t in resized_targets])
        if gt_states.numel():
            loss_state = F.cross_entropy(logits.float(), gt_states)
        else:  # no annotated part in the batch: a zero that keeps the head in the graph
            loss_state = logits.sum() * 0.0
        losses = dict(losses)
        losses["loss_state"] = loss_state
        total = sum(losses[k] for k in DETECTION_LOSSES) + self.state_loss_weight * loss_state
        return total, losses

    @torch.no_grad()
    def predict(self, images):
        """Detections with states, in original image coordinates.

        Returns:
            list[dict]: per image ``boxes`` (R, 4) xyxy, ``labels`` (R,) category ids,
            ``scores`` (R,), ``states`` (R,) int64, ``state_scores`` (R, 4) float.
        """
        assert not self.training, "call model.eval() first"
        _, detections, features, image_sizes, _, original_sizes = self._base_forward(images)
        logits = self._state_logits(features, [d["boxes"] for d in detections], image_sizes)
        probs = logits.float().softmax(dim=1)
        for det, p in zip(detections, probs.split([len(d["boxes"]) for d in detections])):
            det["state_scores"] = p
            det["states"] = p.argmax(dim=1)
        return self.base_model.transform.postprocess(detections, image_sizes, original_sizes)


def build_seed_model(num_parts=22, num_states=4, weights=None, min_size=800, max_size=1333,
                     norm=None, trainable_layers=None, reuse_features=True):
    """The seed's ``MultiTaskFasterRCNN``.

    Args:
        num_parts: number of part categories (the box predictor gets ``num_parts + 1`` classes).
        weights: ``None`` (random init), ``"DEFAULT"`` (torchvision's COCO weights, as the seed;
            needs them downloadable or cached) or ``"auto"`` (DEFAULT when they can be loaded,
            else random init with a warning).
        min_size, max_size: torchvision's resize of the input images (its defaults 800, 1333).
        norm: normalisation layers of a model built from scratch: ``"bn"`` (trainable
            BatchNorm in the ResNet), ``"frozen_bn"`` (FrozenBatchNorm2d in the ResNet) or
            ``"gn"`` (GroupNorm with 32 groups in the ResNet and the FPN, as detectron2's
            ``scratch_*_gn`` configs); None = torchvision's choice (FrozenBatchNorm with the COCO
            weights, trainable BatchNorm from scratch). The COCO weights come with
            FrozenBatchNorm only.
        trainable_layers: trainable ResNet stages counted from the top (3 = layer2..4, i.e.
            detectron2's res3..res5); None = torchvision's choice (3 pretrained, 5 scratch).
        reuse_features: see the module docstring.
    """
    from functools import partial

    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import (
        FastRCNNPredictor,
        FasterRCNN_ResNet50_FPN_Weights,
        fasterrcnn_resnet50_fpn,
    )
    from torchvision.ops import FrozenBatchNorm2d

    group_norm = partial(nn.GroupNorm, 32)
    # norm -> (ResNet norm layer, FPN norm layer); torchvision's FPN has none by default.
    norms = {"bn": (nn.BatchNorm2d, None), "frozen_bn": (FrozenBatchNorm2d, None),
             "gn": (group_norm, group_norm)}
    if norm is not None and norm not in norms:
        raise ValueError(f"norm must be None, 'bn', 'frozen_bn' or 'gn', not {norm!r}")
    if weights is not None and norm not in (None, "frozen_bn"):
        raise ValueError(f"norm={norm!r} needs weights=None: torchvision's COCO Faster R-CNN "
                         "comes with FrozenBatchNorm")
    base = None
    if weights in ("DEFAULT", "auto"):
        try:
            base = fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.DEFAULT,
                                           min_size=min_size, max_size=max_size,
                                           trainable_backbone_layers=trainable_layers)
        except Exception as e:  # no network / no cached file
            if weights == "DEFAULT":
                raise RuntimeError(f"torchvision's COCO weights cannot be loaded: {e}") from e
            logger.warning("torchvision COCO weights unavailable (%s); random init", e)
    elif weights is not None:
        raise ValueError(f"weights must be None, 'DEFAULT' or 'auto', not {weights!r}")
    if base is None:
        # fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None), with its two from-scratch
        # choices (BatchNorm, all 5 stages trainable) overridable.
        resnet_norm, fpn_norm = norms[norm or "bn"]
        backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=resnet_norm),
                                         5 if trainable_layers is None else trainable_layers,
                                         norm_layer=fpn_norm)
        base = FasterRCNN(backbone, num_classes=91, min_size=min_size, max_size=max_size)
    in_features = base.roi_heads.box_predictor.cls_score.in_features
    base.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_parts + 1)
    return MultiTaskFasterRCNN(base, num_states=num_states, reuse_features=reuse_features)


# ------------------------------------------------------------------------------ training (step 6)


def seed_everything(seed=42):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _to_device(images, targets, device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return images, targets


def build_optimizer(model):
    """AdamW(lr 1e-4, weight decay 1e-4) on the trainable parameters, as the seed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)


def train_step(model, images, targets, optimizer, scaler, amp):
    """One optimizer step; returns the loss dict (floats not synced: tensors)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", enabled=amp):
        total, losses = model(images, targets)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
    return total, losses


def train_one_epoch(model, loader, optimizer, scaler, device, amp, max_steps=None,
                    progress=True):
    """The seed's training phase; returns the average training loss and the per-batch log (one
    dict per step: the losses and ``images``, how many images the step trained on)."""
    model.train()
    log, total_sum, steps = [], 0.0, 0
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="seed train", unit="batch", leave=False)
    for images, targets in batches:
        if max_steps is not None and steps >= max_steps:
            break
        images, targets = _to_device(images, targets, device)
        total, losses = train_step(model, images, targets, optimizer, scaler, amp)
        value = float(total.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"seed baseline: non-finite training loss at step {steps}")
        row = {"train_loss": value, "images": len(images)}
        row.update({f"train_{k}": float(v.detach()) for k, v in losses.items()})
        log.append(row)
        total_sum += value
        steps += 1
    return total_sum / max(steps, 1), log


@torch.no_grad()
def validation_loss(model, loader, device, amp=False):
    """Average total loss over the validation loader (training mode, BN/Dropout in eval)."""
    was_training = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)):
            m.eval()
    total, count = 0.0, 0
    try:
        for images, targets in loader:
            images, targets = _to_device(images, targets, device)
            with torch.autocast("cuda", enabled=amp):
                loss, _ = model(images, targets)
            total += float(loss) * len(images)
            count += len(images)
    finally:
        for m, mode in was_training.items():
            m.training = mode
    return total / max(count, 1)


def fit(model, train_loader, val_loader, epochs, device, output_dir=None, progress=True):
    """The seed's training loop (step 6). Returns the history: one dict per epoch with
    ``avg_train_loss``, ``avg_val_loss``, ``learning_rate``, ``seconds`` and ``images`` (counted
    batch by batch)."""
    amp = str(device).startswith("cuda") and torch.cuda.is_available()
    optimizer = build_optimizer(model)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                           patience=3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    best = float("inf")
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        avg_train, log = train_one_epoch(model, train_loader, optimizer, scaler, device, amp,
                                         progress=progress)
        avg_val = validation_loss(model, val_loader, device, amp)
        scheduler.step(avg_val)
        lr = optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch + 1, "avg_train_loss": avg_train, "avg_val_loss": avg_val,
                        "learning_rate": lr, "seconds": time.perf_counter() - start,
                        "images": sum(row["images"] for row in log)})
        logger.info("seed epoch %d: train %.4f val %.4f lr %.2e", epoch + 1, avg_train, avg_val,
                    lr)
        if avg_val < best and output_dir:
            best = avg_val
            os.makedirs(output_dir, exist_ok=True)
            torch.save(model.state_dict(), os.path.join(output_dir, BEST_CHECKPOINT))
    return history


# ------------------------------------------------------------------------------ evaluation


def to_instances(prediction, image_size, category_to_contiguous):
    """One :meth:`MultiTaskFasterRCNN.predict` dict -> detectron2 ``Instances``.

    Args:
        prediction: dict with ``boxes``, ``labels`` (category ids), ``scores``, ``states``,
            ``state_scores``.
        image_size: (height, width) of the original image.
        category_to_contiguous: category id -> 0-based class (the dataset's
            ``thing_dataset_id_to_contiguous_id``).
    """
    from detectron2.structures import Boxes, Instances

    inst = Instances(tuple(int(v) for v in image_size))
    inst.pred_boxes = Boxes(prediction["boxes"].float().cpu())
    inst.scores = prediction["scores"].float().cpu()
    inst.pred_classes = torch.tensor(
        [category_to_contiguous[int(c)] for c in prediction["labels"].tolist()],
        dtype=torch.int64)
    inst.pred_states = prediction["states"].to(torch.int64).cpu()
    inst.state_scores = prediction["state_scores"].float().cpu()
    return inst


@torch.no_grad()
def evaluate_with_bikestate(model, loader, dataset_name, device, output_dir=None, amp=False,
                            progress=True):
    """Score the seed model with ``BikeStateEvaluator`` on a registered bike dataset.

    ``loader`` yields the seed's ``(images, targets)`` batches of the same COCO file that
    ``dataset_name`` was registered from (image ids agree). Returns the evaluator's results.
    """
    from detectron2.data import MetadataCatalog

    from bikestate.evaluation import BikeStateEvaluator

    mapping = {int(k): v for k, v in
               MetadataCatalog.get(dataset_name).thing_dataset_id_to_contiguous_id.items()}
    evaluator = BikeStateEvaluator(dataset_name, distributed=False, output_dir=output_dir)
    evaluator.reset()
    model.eval()
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="seed eval", unit="batch", leave=False)
    for images, targets in batches:
        sizes = [tuple(img.shape[-2:]) for img in images]
        images = [img.to(device) for img in images]
        with torch.autocast("cuda", enabled=amp):
            predictions = model.predict(images)
        inputs = [{"image_id": int(t["image_id"])} for t in targets]
        outputs = [{"instances": to_instances(p, s, mapping)}
                   for p, s in zip(predictions, sizes)]
        evaluator.process(inputs, outputs)
    return evaluator.evaluate()
