"""ROIAlign with a CPU backward made of matrix products.

torchvision's CPU ``roi_align`` backward visits every (ROI, channel, bin, sample), recomputes the
bilinear weights of the sample for every channel and adds four values at a time, on one thread:
on ``configs/bike_small_cpu.yaml`` it took a tenth of a CPU training step. Bilinear weights are
separable, so the gradient that reaches the feature map of image ``n`` is

    grad[n, c, y, x] = sum over ROIs r of image n, bins (i, j) of  A_r[i, y] G_r[c, i, j] B_r[j, x]

where ``G_r`` (C, PH, PW) is the output gradient divided by the ROI's sample count, ``A_r``
(PH, H) sums, for bin row ``i``, the weights its samples put on row ``y`` and ``B_r`` (PW, W)
the same for columns: one batched product over the columns and one product per image. The
forward, and everything on other devices, is torchvision's.
"""
import torch
from detectron2.layers import ROIAlign as _D2ROIAlign
from detectron2.modeling.poolers import ROIPooler
from torch.autograd.function import once_differentiable
from torchvision.ops import roi_align

from ..utils.errors import ConfigError

__all__ = ["ROIAlign", "POOLER_CPU_BACKWARDS", "roi_align_backward", "set_pooler_cpu_backward"]

# Values of MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD.
POOLER_CPU_BACKWARDS = ("matmul", "torchvision")


def _axis_weights(start, bin_size, grid, pooled, size):
    """Summed bilinear weights along one axis, following torchvision's sampling rules.

    Args:
        start, bin_size: (R,) the ROIs' first coordinate and bin size in feature pixels.
        grid: (R,) samples per bin along the axis (0 or less: none).
        pooled (int): bins along the axis; size (int): pixels of the feature map along it.

    Returns:
        (R, pooled, size): ``w[r, i, k]``, the sum over bin ``i``'s samples of the weight that
        each puts on pixel ``k``. A sample beyond [-1, size] puts none; one in [-1, 0] counts
        as 0; one past the last pixel's centre takes the last pixel whole.
    """
    num = start.shape[0]
    samples = max(int(grid.max()), 1)
    bins = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]
    steps = torch.arange(samples, dtype=start.dtype, device=start.device)[None, None, :]
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    per_bin = grid.clamp(min=1).to(start.dtype)[:, None, None]
    # The same operations in the same order as torchvision's kernel.
    pos = start + bins * bin_size + (steps + 0.5) * bin_size / per_bin
    valid = (steps < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.floor()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    pos = torch.where(at_end, low, pos)
    high = torch.where(at_end, low, low + 1)
    frac = (pos - low) * valid
    weights = pos.new_zeros(num, pooled, size)
    weights.scatter_add_(2, low.long(), valid.to(pos.dtype) - frac)
    weights.scatter_add_(2, high.long(), frac)
    return weights


def roi_align_backward(grad_output, rois, input_shape, spatial_scale, sampling_ratio, aligned):
    """Gradient of ``torchvision.ops.roi_align`` with respect to its input.

    Args:
        grad_output: (R, C, PH, PW) gradient of the pooled output.
        rois: (R, 5) rows (batch index, x0, y0, x1, y1) in input coordinates.
        input_shape: (N, C, H, W) of the pooled feature map.
        spatial_scale, sampling_ratio, aligned: as given to ``roi_align``.

    Returns:
        (N, C, H, W) gradient of the feature map, equal to torchvision's up to the order of
        the float additions.
    """
    _, channels, height, width = input_shape
    num, _, pooled_h, pooled_w = grad_output.shape
    grad_input = grad_output.new_zeros(input_shape)
    if num == 0:
        return grad_input
    rois = rois.to(grad_output.dtype)
    offset = 0.5 if aligned else 0.0
    x0 = rois[:, 1] * spatial_scale - offset
    y0 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x0
    roi_h = rois[:, 4] * spatial_scale - offset - y0
    if not aligned:  # the legacy rule: at least one pixel
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / pooled_w, roi_h / pooled_h
    if sampling_ratio > 0:
        grid_w = grid_h = torch.full_like(roi_w, sampling_ratio, dtype=torch.int64)
    else:  # as many samples as the bin is pixels wide (at least one, none for empty ROIs)
        grid_w, grid_h = torch.ceil(bin_w).long(), torch.ceil(bin_h).long()
    rows = _axis_weights(y0, bin_h, grid_h, pooled_h, height)  # (R, PH, H)
    cols = _axis_weights(x0, bin_w, grid_w, pooled_w, width)  # (R, PW, W)
    count = (grid_h * grid_w).clamp(min=1).to(grad_output.dtype)
    # (R, PH, C, PW): a small copy, so that the product below comes out as rows (r, i) and
    # columns (c, x) without copying the larger result.
    scaled = (grad_output / count[:, None, None, None]).transpose(1, 2).contiguous()
    # Contract the columns: (R, PH*C, PW) @ (R, PW, W) -> (R*PH, C*W).
    partial = torch.bmm(scaled.reshape(num, pooled_h * channels, pooled_w), cols)
    partial = partial.reshape(num, pooled_h, channels * width)
    batch = rois[:, 0].long()
    if num > 1 and bool((batch[1:] < batch[:-1]).any()):  # detectron2 orders ROIs by image
        order = torch.argsort(batch, stable=True)
        batch, rows, partial = batch[order], rows[order], partial[order]
    images, counts = torch.unique_consecutive(batch, return_counts=True)
    begin = 0
    for n, size in zip(images.tolist(), counts.tolist()):
        # Contract ROIs and bin rows at once: (H, R_n*PH) @ (R_n*PH, C*W).
        row_weights = rows[begin:begin + size].permute(2, 0, 1).reshape(height, -1)
        mine = partial[begin:begin + size].reshape(-1, channels * width)
        grad_input[n] = (row_weights @ mine).reshape(height, channels, width).transpose(0, 1)
        begin += size
    return grad_input


class _ROIAlignMatmulBackward(torch.autograd.Function):
    """torchvision's forward, :func:`roi_align_backward` for the input's gradient."""

    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        ctx.save_for_backward(rois)
        ctx.config = (tuple(features.shape), spatial_scale, sampling_ratio, aligned)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        shape, spatial_scale, sampling_ratio, aligned = ctx.config
        grad = roi_align_backward(grad_output.contiguous(), rois, shape, spatial_scale,
                                  sampling_ratio, aligned)
        return grad, None, None, None, None, None


class ROIAlign(_D2ROIAlign):
    """detectron2's ``ROIAlign`` whose backward on CPU is :func:`roi_align_backward`.

    Same arguments and outputs; on other devices, without gradients, and while tracing for
    export, it is detectron2's module unchanged.
    """

    def forward(self, input, rois):
        if (input.device.type == "cpu" and input.requires_grad and torch.is_grad_enabled()
                and not torch.jit.is_tracing() and not input.is_quantized):
            assert rois.dim() == 2 and rois.size(1) == 5
            return _ROIAlignMatmulBackward.apply(input, rois.to(dtype=input.dtype),
                                                 self.output_size, self.spatial_scale,
                                                 self.sampling_ratio, self.aligned)
        return super().forward(input, rois)


def set_pooler_cpu_backward(pooler: ROIPooler, backward: str) -> ROIPooler:
    """Give every ROIAlign level of ``pooler`` the CPU backward ``backward`` (one of
    :data:`POOLER_CPU_BACKWARDS`), in place; other pooler types are left as they are."""
    if backward not in POOLER_CPU_BACKWARDS:
        raise ConfigError(f"MODEL.ROI_BOX_HEAD.POOLER_CPU_BACKWARD must be one of "
                          f"{', '.join(POOLER_CPU_BACKWARDS)}, got {backward!r}")
    cls = ROIAlign if backward == "matmul" else _D2ROIAlign
    for k, level in enumerate(pooler.level_poolers):
        if isinstance(level, _D2ROIAlign):
            pooler.level_poolers[k] = cls(level.output_size, level.spatial_scale,
                                          level.sampling_ratio, level.aligned)
    return pooler
