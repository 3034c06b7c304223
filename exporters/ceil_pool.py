"""ceil_mode pools, rewritten for export as floor-mode pools over an explicitly padded input.

PyTorch and ONNX round a ceil_mode pool's output size up alike, but PyTorch then drops a last
window that would start in the right padding (aten's `pooling_output_shape`) while ONNX's shape
inference keeps it: `maxpool: {kernel: 2, stride: 2, padding: 1, ceil_mode: true}` on 5 pixels is
3 wide in torch and 4 in onnx.checker. Exported as is, such a model fails the checker or answers
differently. The rewrite below asks no rounding rule of the runtime: it pads the right/bottom edge
by exactly what torch's last window overhangs and pools in floor mode, which gives torch's size
and windows on every runtime. Values:

- max: the overhang is padded with −inf, which never wins a max (torch ignores it the same way;
  every window torch keeps starts inside the input or its left padding, so none is all −inf);
- avg: the overhang is padded with zeros (they add nothing to a sum) and the floor-mode pool,
  counting every position, divides by kh·kw; each output is then rescaled to torch's own divisor,
  which counts the implicit padding but not the overhang (count_include_pad=True) or only the
  input's pixels (count_include_pad=False) — aten's avg_pool2d `pool_size`/`divide_factor`.

The padding is an ONNX Pad (opset 18 form), for which onnx's version converter has no adapter to
17: a model whose ceil_mode pools overhang exports at 18–23 only, and `--opset 17` says so.

Only the export sees the rewrite (`lowered_ceil_pools` swaps the modules for the duration of the
export and puts them back); eager PyTorch keeps nn.MaxPool2d/nn.AvgPool2d and their numerics, and
the parity check compares the ONNX file against those originals.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def torch_pool_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """Output length along one axis, PyTorch's rule (aten `pooling_output_shape`)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # the last window would start in the padding
        out -= 1
    return out


def overhang(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """How far torch's last ceil_mode window reaches past the padded input (0: ceil_mode changes nothing)."""
    out = torch_pool_size(size, kernel, stride, padding, dilation, True)
    last_end = (out - 1) * stride + dilation * (kernel - 1) + 1  # in padded coordinates
    return max(0, last_end - (size + 2 * padding))


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class FloorMaxPool(nn.Module):
    """nn.MaxPool2d(ceil_mode=True), as −inf padding + a floor-mode max pool."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel, self.stride = _pair(pool.kernel_size), _pair(pool.stride)
        self.padding, self.dilation = _pair(pool.padding), _pair(pool.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra_h, extra_w = (overhang(n, k, s, p, d) for n, k, s, p, d in
                            zip(x.shape[-2:], self.kernel, self.stride, self.padding, self.dilation))
        if extra_h or extra_w:
            x = F.pad(x, (0, extra_w, 0, extra_h), value=-math.inf)
        return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation, ceil_mode=False)


class FloorAvgPool(nn.Module):
    """nn.AvgPool2d(ceil_mode=True), as zero padding + a floor-mode sum rescaled to torch's divisors."""

    def __init__(self, pool: nn.AvgPool2d):
        super().__init__()
        if pool.divisor_override is not None:
            raise ValueError("divisor_override is not lowered")  # netspec never sets it
        self.kernel, self.stride, self.padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
        self.count_include_pad = pool.count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = list(zip((int(n) for n in x.shape[-2:]), self.kernel, self.stride, self.padding))  # H, W
        extra_h, extra_w = (overhang(n, k, s, p, 1) for n, k, s, p in axes)
        if not (extra_h or extra_w):  # no window overhangs: ceil_mode changes nothing
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding, ceil_mode=False,
                                count_include_pad=self.count_include_pad)
        x = F.pad(x, (0, extra_w, 0, extra_h))
        mean_over_window = F.avg_pool2d(x, self.kernel, self.stride, self.padding, ceil_mode=False,
                                        count_include_pad=True)
        rows, cols = (self._divisors(n, k, s, p) for n, k, s, p in axes)
        window = self.kernel[0] * self.kernel[1]
        scale = torch.tensor([[window / (r * c) for c in cols] for r in rows], dtype=x.dtype, device=x.device)
        return mean_over_window * scale

    def _divisors(self, size: int, kernel: int, stride: int, padding: int) -> list[int]:
        """Torch's divisor along one axis for each output position (aten avg_pool2d)."""
        divisors = []
        for i in range(torch_pool_size(size, kernel, stride, padding, 1, True)):
            start = i * stride - padding
            end = min(start + kernel, size + padding)  # the implicit padding counts, the overhang does not
            if not self.count_include_pad:
                start, end = max(start, 0), min(end, size)
            divisors.append(end - start)
        return divisors


def _lowered(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.MaxPool2d) and module.ceil_mode and not module.return_indices:
        return FloorMaxPool(module)
    if isinstance(module, nn.AvgPool2d) and module.ceil_mode:
        return FloorAvgPool(module)
    return None


@contextlib.contextmanager
def lowered_ceil_pools(model: nn.Module) -> Iterator[int]:
    """Within the block, every ceil_mode pool of `model` is its floor-mode rewrite; yields how many."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _lowered(child)
            if replacement is not None:
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
