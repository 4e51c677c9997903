"""The state head registry, the MLP head and the state loss."""
import pytest
import torch
from torch.nn import functional as F

from bikestate.modeling import STATE_HEAD_REGISTRY, MLPStateHead, build_state_head, state_loss

from modeling_cases import MLP_HEAD_OPTS, make_cfg


def test_mlp_head_is_the_seeds_mlp():
    cfg = make_cfg(opts=MLP_HEAD_OPTS)
    head = build_state_head(cfg, 1024)
    assert isinstance(head, MLPStateHead)
    assert STATE_HEAD_REGISTRY.get("MLPStateHead") is MLPStateHead
    assert (head.fc_hidden.in_features, head.fc_hidden.out_features) == (1024, 256)
    assert head.dropout.p == pytest.approx(0.2)
    assert (head.state_logits.in_features, head.state_logits.out_features) == (256, 4)
    head.eval()
    assert head(torch.randn(7, 1024)).shape == (7, 4)
    # Conv-shaped box features (R, C, H, W) are flattened like the box predictor does.
    assert build_state_head(cfg, 8 * 2 * 2).eval()(torch.randn(3, 8, 2, 2)).shape == (3, 4)


def test_class_conditioned_head_requires_classes():
    cfg = make_cfg(opts=MLP_HEAD_OPTS + ["MODEL.ROI_STATE_HEAD.CLASS_CONDITIONED", True])
    head = build_state_head(cfg, 64).eval()
    assert head(torch.randn(2, 64), torch.tensor([0, 22])).shape == (2, 4)  # 22 = background
    with pytest.raises(ValueError, match="classes"):
        head(torch.randn(2, 64))


def test_state_loss_is_cross_entropy_with_optional_state_weights():
    logits = torch.randn(10, 4)
    gt = torch.tensor([0, 1, 2, 3, 0, 0, 1, 2, 3, 3])
    assert state_loss(logits, gt).item() == pytest.approx(F.cross_entropy(logits, gt).item())
    assert state_loss(logits, gt, []).item() == pytest.approx(F.cross_entropy(logits, gt).item())
    w = [1.0, 6.0, 1.0, 2.0]
    manual = (-(logits.log_softmax(1)[torch.arange(10), gt]) * torch.tensor(w)[gt]).sum() / \
        torch.tensor(w)[gt].sum()
    assert state_loss(logits, gt, w).item() == pytest.approx(manual.item(), rel=1e-5)
    with pytest.raises(ValueError, match="STATE_LOSS_WEIGHTS"):
        state_loss(logits, gt, [1.0, 2.0])


def test_state_loss_without_boxes_is_a_connected_zero():
    head = build_state_head(make_cfg(opts=MLP_HEAD_OPTS), 32)
    logits = head(torch.randn(0, 32))
    loss = state_loss(logits, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
