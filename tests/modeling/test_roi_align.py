"""The CPU backward of bikestate's ROIAlign (matrix products) against torchvision's kernel."""
import pytest
import torch
from detectron2.layers import ROIAlign as D2ROIAlign
from detectron2.modeling import build_model
from torchvision.ops import roi_align

from bikestate.modeling.roi_align import ROIAlign, roi_align_backward
from bikestate.utils.errors import ConfigError

from modeling_cases import POOLED_OPTS, make_cfg, random_batch


def _rois(num, num_images, height, width, scale, generator):
    """(num, 5) ROIs in input pixels over images of (height, width) feature pixels: some reach
    past the border, some have zero or negative size, images interleaved (not sorted)."""
    img_h, img_w = height / scale, width / scale
    centre = torch.rand(num, 2, generator=generator) * 1.3 - 0.15
    size = torch.rand(num, 2, generator=generator) * 0.7
    size[:3, 0] = 0.0  # empty
    size[3:5, 1] = -0.05  # inverted
    xy = centre * torch.tensor([img_w, img_h])
    wh = size * torch.tensor([img_w, img_h])
    batch = torch.randint(0, num_images, (num, 1), generator=generator).float()
    return torch.cat([batch, xy - wh / 2, xy + wh / 2], dim=1)


def _torchvision_grad(features, rois, grad_out, output_size, scale, ratio, aligned):
    x = features.clone().requires_grad_(True)
    roi_align(x, rois, output_size, scale, ratio, aligned).backward(grad_out)
    return x.grad


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [0, 2])
@pytest.mark.parametrize("shape,scale,output_size", [((3, 8, 20, 27), 1 / 16, 7),
                                                     ((2, 3, 48, 64), 1.0, 12)])
def test_matmul_backward_equals_torchvision(aligned, ratio, shape, scale, output_size):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(*shape, generator=g)
    rois = _rois(60, shape[0], shape[2], shape[3], scale, g)
    layer = ROIAlign((output_size, output_size), scale, ratio, aligned)
    x = features.clone().requires_grad_(True)
    out = layer(x, rois)
    # The forward is torchvision's, bit for bit.
    assert torch.equal(out, roi_align(features, rois, output_size, scale, ratio, aligned))
    grad_out = torch.randn(out.shape, generator=g)
    out.backward(grad_out)
    expected = _torchvision_grad(features, rois, grad_out, output_size, scale, ratio, aligned)
    assert expected.abs().max() > 1.0  # the ROIs reach the map: a gradient to compare
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-5 * expected.abs().max())


def test_backward_without_rois_and_on_an_image_without_rois():
    features = torch.randn(3, 4, 10, 12)
    empty = roi_align_backward(torch.zeros(0, 4, 7, 7), torch.zeros(0, 5), features.shape,
                               0.5, 0, True)
    assert empty.shape == features.shape and not empty.any()
    rois = torch.tensor([[2.0, 1.0, 1.0, 15.0, 12.0], [0.0, 3.0, 2.0, 9.0, 18.0]])
    grad_out = torch.randn(2, 4, 7, 7)
    grad = roi_align_backward(grad_out, rois, features.shape, 0.5, 0, True)
    assert not grad[1].any() and grad[0].any() and grad[2].any()
    torch.testing.assert_close(grad, _torchvision_grad(features, rois, grad_out, 7, 0.5, 0, True),
                               rtol=0, atol=1e-5)


def test_traced_and_gradient_free_calls_use_torchvision_unchanged():
    layer = ROIAlign((7, 7), 0.25, 0, True)
    features, rois = torch.randn(1, 4, 16, 16), torch.tensor([[0.0, 4.0, 4.0, 40.0, 50.0]])
    graph = torch.jit.trace(layer, (features, rois)).graph
    assert "torchvision::roi_align" in str(graph) and "PythonOp" not in str(graph)
    with torch.no_grad():
        out = layer(features.requires_grad_(True), rois)
    assert out.grad_fn is None


def _step_grads(backward, batch):
    torch.manual_seed(0)
    model = build_model(make_cfg(opts=["MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD", backward]))
    model.train()
    torch.manual_seed(1)  # the same proposals sampled in both models
    from detectron2.utils.events import EventStorage

    with EventStorage(0):
        losses = model(batch)
    sum(losses.values()).backward()
    return model, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_config_chooses_the_backward_and_a_training_step_gets_the_same_gradients():
    batch = random_batch(num_boxes=(6, 4))
    matmul_model, matmul = _step_grads("matmul", batch)
    plain_model, plain = _step_grads("torchvision", batch)
    levels = matmul_model.roi_heads.box_pooler.level_poolers
    assert all(type(level) is ROIAlign for level in levels)
    assert all(type(level) is D2ROIAlign
               for level in plain_model.roi_heads.box_pooler.level_poolers)
    assert matmul.keys() == plain.keys()
    # The backbone's gradient passes through the box pooler.
    backbone = [n for n in matmul if n.startswith("backbone.")]
    assert backbone and any(matmul[n].abs().max() > 0 for n in backbone)
    for name in matmul:
        torch.testing.assert_close(matmul[name], plain[name], rtol=1e-4,
                                   atol=1e-6 + 1e-4 * plain[name].abs().max().item(), msg=name)


def test_state_pooler_of_the_pixels_gets_it_too_and_bad_values_are_refused():
    model = build_model(make_cfg(opts=POOLED_OPTS))
    assert all(type(level) is ROIAlign for level in model.roi_heads.state_pooler.level_poolers)
    with pytest.raises(ConfigError, match="POOLER_CPU_BACKWARD must be one of matmul, torch"):
        build_model(make_cfg(opts=["MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD", "fast"]))
