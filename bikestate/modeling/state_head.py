"""The state head: per-box part state (intact, damaged, absent, occluded).

Heads live in :data:`STATE_HEAD_REGISTRY` so a user can swap in another head by config
(``MODEL.ROI_STATE_HEAD.NAME``) without touching :class:`bikestate.modeling.StateROIHeads`.
A head maps per-box inputs and optionally the boxes' part classes to state logits
(``R x NUM_STATES``). The input is what :class:`~bikestate.modeling.StateROIHeads` gives it:

* with ``MODEL.ROI_STATE_HEAD.IN_FEATURES`` empty, the box head's feature vectors (``R x D``,
  D = 1024 for detectron2's FPN box head), shared with the box predictor (:class:`MLPStateHead`);
* otherwise each box pooled for the state head alone from those maps (``R x C x P x P``, e.g.
  the input pixels, C = 3, at P = 24), which keeps the small details that tell a bent rim from
  a straight one (:class:`ConvStateHead`).
"""
import functools
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.utils.registry import Registry

__all__ = ["STATE_HEAD_REGISTRY", "MLPStateHead", "ConvStateHead", "build_state_head",
           "state_loss"]

STATE_HEAD_REGISTRY = Registry("ROI_STATE_HEAD")
STATE_HEAD_REGISTRY.__doc__ = """
Registry for state heads, which predict the state of each box from its box-head features.

The registered object is called with ``obj(cfg, input_shape)`` (a ``ShapeSpec``: ``channels``
and, for pooled inputs, ``height`` = ``width`` = P) and must return an ``nn.Module`` whose
``forward(features, classes=None)`` returns state logits of shape (R, NUM_STATES).
"""


class _StateClassifierMixin:
    """The layers every state head ends with: the optional part embedding concatenated to the
    per-box vector, then ``Linear(-> H) -> ReLU -> Dropout -> Linear(H -> S)``. Parameter names
    (``class_embed``, ``fc_hidden``, ``state_logits``) are part of the checkpoint format."""

    def _init_classifier(self, input_dim, num_states, hidden_dim, dropout, num_classes,
                         class_embed_dim):
        self.num_states = num_states
        self.class_conditioned = class_embed_dim > 0
        if self.class_conditioned:
            assert num_classes > 0, "class conditioning needs the number of part classes"
            # One extra row for the background label (= num_classes), which gt_classes may carry.
            self.class_embed = nn.Embedding(num_classes + 1, class_embed_dim)
            nn.init.normal_(self.class_embed.weight, std=0.01)
        self.fc_hidden = nn.Linear(input_dim + max(class_embed_dim, 0), hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.state_logits = nn.Linear(hidden_dim, num_states)
        # Small initial logits: the first state losses are close to log(S), as for the box head.
        nn.init.normal_(self.state_logits.weight, std=0.01)
        nn.init.constant_(self.state_logits.bias, 0.0)

    @staticmethod
    def _classifier_config(cfg):
        """The ``_init_classifier`` arguments from ``MODEL.ROI_STATE_HEAD``."""
        head_cfg = cfg.MODEL.ROI_STATE_HEAD
        return {
            "num_states": head_cfg.NUM_STATES,
            "hidden_dim": head_cfg.HIDDEN_DIM,
            "dropout": head_cfg.DROPOUT,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "class_embed_dim": head_cfg.CLASS_EMBED_DIM if head_cfg.CLASS_CONDITIONED else 0,
        }

    def _classify(self, x: torch.Tensor, classes: Optional[torch.Tensor]) -> torch.Tensor:
        """(R, D) vectors and (R,) part classes -> (R, S) state logits."""
        if self.class_conditioned:
            if classes is None:
                raise ValueError("a class-conditioned state head needs the boxes' classes")
            x = torch.cat([x, self.class_embed(classes)], dim=1)
        return self.state_logits(self.dropout(F.relu(self.fc_hidden(x))))


@STATE_HEAD_REGISTRY.register()
class MLPStateHead(_StateClassifierMixin, nn.Module):
    """The default state head: ``Linear(D -> H) -> ReLU -> Dropout -> Linear(H -> S)``.

    With ``class_conditioned`` a learned embedding of the box's part class (``E`` numbers) is
    concatenated to the box features before the first layer, so one part's "absent" can look
    different from another's. While training the class is the ground-truth class of the
    proposal; at inference it is the predicted class of the detection.
    """

    @configurable
    def __init__(
        self,
        *,
        input_dim: int,
        num_states: int = 4,
        hidden_dim: int = 256,
        dropout: float = 0.2,
        num_classes: int = 0,
        class_embed_dim: int = 0,
    ):
        """
        Args:
            input_dim: D, size of each box's feature vector.
            num_states: S, number of states.
            hidden_dim: H, width of the hidden layer.
            dropout: dropout probability after the hidden layer.
            num_classes: number of part classes; used only when ``class_embed_dim > 0``.
            class_embed_dim: E, size of the part embedding; 0 disables class conditioning.
        """
        super().__init__()
        self._init_classifier(input_dim, num_states, hidden_dim, dropout, num_classes,
                              class_embed_dim)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "input_dim": input_shape.channels * (input_shape.height or 1) * (input_shape.width
                                                                            or 1),
            **cls._classifier_config(cfg),
        }

    def forward(self, features: torch.Tensor, classes: Optional[torch.Tensor] = None):
        """
        Args:
            features: (R, D) box-head features, one row per box.
            classes: (R,) int64 part class of each box (values in [0, num_classes]); required
                when the head is class conditioned, ignored otherwise.

        Returns:
            Tensor: (R, S) state logits.
        """
        if features.dim() > 2:
            features = torch.flatten(features, start_dim=1)
        return self._classify(features, classes)


@STATE_HEAD_REGISTRY.register()
class ConvStateHead(_StateClassifierMixin, nn.Module):
    """A small CNN on each box pooled for the state head alone.

    ``NUM_CONV`` 3x3 convolutions (``CONV_DIM`` channels, ``NORM``, ReLU; every second one with
    stride 2), flattened, concatenated with the part embedding (when class conditioned), then
    ``Linear -> ReLU -> Dropout -> Linear`` to S logits. On the input pixels this is a crop
    classifier sharing nothing with the detector but the boxes, which is what the damaged and
    absent states need: they are small visual details (a dent, an empty fork) that the box
    head's 7x7 pooled features, trained to localize parts, average away.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: ShapeSpec,
        num_states: int = 4,
        conv_dims: Sequence[int] = (32, 32, 64, 64),
        norm: str = "GN",
        hidden_dim: int = 256,
        dropout: float = 0.2,
        num_classes: int = 0,
        class_embed_dim: int = 0,
    ):
        """
        Args:
            input_shape: C channels and P x P size of each pooled box.
            num_states: S, number of states.
            conv_dims: output channels of each 3x3 convolution.
            norm: normalization after each convolution ("GN", "BN", "" ...).
            hidden_dim: H, width of the hidden fully connected layer.
            dropout: dropout probability after it.
            num_classes: number of part classes; used only when ``class_embed_dim > 0``.
            class_embed_dim: E, size of the part embedding; 0 disables class conditioning.
        """
        super().__init__()
        channels, size = input_shape.channels, input_shape.height
        layers = []
        # In place: nothing reads a convolution's (or its norm's) output but the ReLU, and the
        # head's largest maps (R x 32 x 32 x 32 in training) are then written once, not twice.
        relu = functools.partial(F.relu, inplace=True)
        for k, dim in enumerate(conv_dims):
            stride = 2 if k % 2 == 1 and size > 4 else 1
            layers.append(Conv2d(channels, dim, kernel_size=3, stride=stride, padding=1,
                                 bias=not norm, norm=get_norm(norm, dim), activation=relu))
            channels, size = dim, (size + 2 - 3) // stride + 1
        self.convs = nn.Sequential(*layers)
        for layer in self.convs:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        self._init_classifier(channels * size * size, num_states, hidden_dim, dropout,
                              num_classes, class_embed_dim)

    @classmethod
    def from_config(cls, cfg, input_shape):
        head_cfg = cfg.MODEL.ROI_STATE_HEAD
        if not input_shape.height:
            raise ValueError("ConvStateHead needs pooled boxes: set MODEL.ROI_STATE_HEAD."
                             "IN_FEATURES (e.g. [\"image\"])")
        return {
            "input_shape": input_shape,
            "conv_dims": [head_cfg.CONV_DIM * (1 + k // 2) for k in range(head_cfg.NUM_CONV)],
            "norm": head_cfg.NORM,
            "hidden_dim": head_cfg.HIDDEN_DIM,
            "dropout": head_cfg.DROPOUT,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "class_embed_dim": head_cfg.CLASS_EMBED_DIM if head_cfg.CLASS_CONDITIONED else 0,
        }

    def forward(self, features: torch.Tensor, classes: Optional[torch.Tensor] = None):
        """
        Args:
            features: (R, C, P, P) pooled boxes.
            classes: (R,) int64 part class of each box; required when class conditioned.

        Returns:
            Tensor: (R, S) state logits.
        """
        return self._classify(torch.flatten(self.convs(features), start_dim=1), classes)


def build_state_head(cfg, input_shape) -> nn.Module:
    """Build the state head named by ``cfg.MODEL.ROI_STATE_HEAD.NAME``.

    Args:
        input_shape (ShapeSpec or int): the per-box input; an int D is ``ShapeSpec(channels=D)``
            (feature vectors of size D).
    """
    if isinstance(input_shape, int):
        input_shape = ShapeSpec(channels=input_shape)
    return STATE_HEAD_REGISTRY.get(cfg.MODEL.ROI_STATE_HEAD.NAME)(cfg, input_shape)


def state_loss(
    logits: torch.Tensor,
    gt_states: torch.Tensor,
    weights: Optional[Sequence[float]] = None,
    focal_gamma: float = 0.0,
    logit_adjustment: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Cross-entropy (or focal loss) between state logits and ground-truth states.

    Args:
        logits: (R, S) state logits of the boxes trained on.
        gt_states: (R,) int64 ground-truth states in [0, S).
        weights: optional S per-state weights (e.g. more weight on the rare ``damaged``);
            ``None`` or empty means uniform. With weights the mean is the weighted mean, as
            :func:`torch.nn.functional.cross_entropy` computes it.
        focal_gamma: > 0: focal loss ``(1 - p_t)^gamma x CE`` per row (Lin et al., 2017),
            averaged like the cross-entropy.
        logit_adjustment: optional (S,) offsets added to the logits before the loss, e.g.
            ``tau x log(prior)`` (logit-adjusted loss, Menon et al., ICLR 2021): the rare states
            must win by a margin in training, so the plain argmax at test is balanced.

    Returns:
        Tensor: scalar loss. With R = 0 it is an exact zero that is still connected to the
        head's parameters (``logits.sum() * 0``), so every parameter receives a (zero) gradient
        and distributed training does not wait forever for unused parameters.
    """
    if logits.numel() == 0 or gt_states.numel() == 0:
        return logits.sum() * 0.0
    weight = None
    if weights is not None and len(weights) > 0:
        weight = torch.as_tensor(list(weights), dtype=logits.dtype, device=logits.device)
        if weight.numel() != logits.shape[1]:
            raise ValueError(
                f"MODEL.ROI_STATE_HEAD.STATE_LOSS_WEIGHTS has {weight.numel()} values but the "
                f"head predicts {logits.shape[1]} states"
            )
    if logit_adjustment is not None:
        logits = logits + logit_adjustment.to(dtype=logits.dtype, device=logits.device)
    gt_states = gt_states.long()
    if focal_gamma <= 0:
        return F.cross_entropy(logits, gt_states, weight=weight, reduction="mean")
    ce = F.cross_entropy(logits, gt_states, reduction="none")
    p_true = torch.exp(-ce)
    row_weight = weight[gt_states] if weight is not None else torch.ones_like(ce)
    return ((1 - p_true) ** focal_gamma * ce * row_weight).sum() / row_weight.sum()
