"""The state head: per-box part state (intact, damaged, absent, occluded) from box-head features.

Heads live in :data:`STATE_HEAD_REGISTRY` so a user can swap in another head by config
(``MODEL.ROI_STATE_HEAD.NAME``) without touching :class:`bikestate.modeling.StateROIHeads`.
A head maps the box head's per-box feature vectors (``R x D``, D = 1024 for detectron2's FPN box
head) and optionally the boxes' part classes to state logits (``R x NUM_STATES``).
"""
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.utils.registry import Registry

__all__ = ["STATE_HEAD_REGISTRY", "MLPStateHead", "build_state_head", "state_loss"]

STATE_HEAD_REGISTRY = Registry("ROI_STATE_HEAD")
STATE_HEAD_REGISTRY.__doc__ = """
Registry for state heads, which predict the state of each box from its box-head features.

The registered object is called with ``obj(cfg, input_dim)`` and must return an ``nn.Module``
whose ``forward(features, classes=None)`` returns state logits of shape (R, NUM_STATES).
"""


@STATE_HEAD_REGISTRY.register()
class MLPStateHead(nn.Module):
    """The seed's state head: ``Linear(D -> H) -> ReLU -> Dropout -> Linear(H -> S)``.

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

    @classmethod
    def from_config(cls, cfg, input_dim):
        head_cfg = cfg.MODEL.ROI_STATE_HEAD
        return {
            "input_dim": input_dim,
            "num_states": head_cfg.NUM_STATES,
            "hidden_dim": head_cfg.HIDDEN_DIM,
            "dropout": head_cfg.DROPOUT,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "class_embed_dim": head_cfg.CLASS_EMBED_DIM if head_cfg.CLASS_CONDITIONED else 0,
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
        if self.class_conditioned:
            if classes is None:
                raise ValueError("a class-conditioned state head needs the boxes' classes")
            features = torch.cat([features, self.class_embed(classes)], dim=1)
        x = self.dropout(F.relu(self.fc_hidden(features)))
        return self.state_logits(x)


def build_state_head(cfg, input_dim: int) -> nn.Module:
    """Build the state head named by ``cfg.MODEL.ROI_STATE_HEAD.NAME`` for D = ``input_dim``."""
    return STATE_HEAD_REGISTRY.get(cfg.MODEL.ROI_STATE_HEAD.NAME)(cfg, input_dim)


def state_loss(
    logits: torch.Tensor,
    gt_states: torch.Tensor,
    weights: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """Cross-entropy between state logits and ground-truth states.

    Args:
        logits: (R, S) state logits of the foreground boxes.
        gt_states: (R,) int64 ground-truth states in [0, S).
        weights: optional S per-state weights (e.g. more weight on the rare ``damaged``);
            ``None`` or empty means uniform. With weights the mean is the weighted mean, as
            :func:`torch.nn.functional.cross_entropy` computes it.

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
    return F.cross_entropy(logits, gt_states.long(), weight=weight, reduction="mean")
