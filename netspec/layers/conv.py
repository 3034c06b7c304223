"""`conv`: torch.nn.Conv2d."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from netspec.errors import ShapeError
from netspec.layers.base import (
    InferContext,
    Layer,
    LayerInfo,
    Padding,
    PositivePair,
    Shape,
    register,
    require_rank,
    sliding_window,
    spatial_formula,
)
from netspec.shapes import symbolic as sym


@register
class Conv(Layer):
    kind = "conv"
    has_weights = True
    torch_equivalent = "torch.nn.Conv2d"
    summary = "2-D convolution over a C×H×W input; `in_channels` is inferred."
    formula_doc = ("H_out = ⌊(H + 2·padding − dilation·(kernel − 1) − 1)/stride⌋ + 1 (PyTorch Conv2d docs); "
                   "params = out·(C/groups)·kh·kw (+ out bias); MACs = out·H_out·W_out·(C/groups)·kh·kw")
    example = ("- conv: {out: 16, kernel: 3, padding: 1}\n"
               "- conv: {out: 32, kernel: 3, stride: 2, padding: 1, bias: false}\n"
               "- conv: {out: 32, kernel: 3, padding: same, groups: 32}    # depthwise")

    out: PositiveInt = Field(description="output channels")
    kernel: PositivePair = Field(description="kernel size, int or [kh, kw]")
    stride: PositivePair = Field((1, 1), description="int or [sh, sw]")
    padding: Padding = Field((0, 0), description="int, [ph, pw], `same` or `valid`")
    dilation: PositivePair = Field((1, 1), description="int or [dh, dw]")
    groups: PositiveInt = Field(1, description="input and output channels must both be divisible by it")
    bias: bool = Field(True, description="add a learnable bias")
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = Field(
        "zeros", description="how the padding is filled")

    def pads(self) -> tuple[int, int]:
        """Per-axis padding; for `same`, PyTorch's (possibly asymmetric) total split is not needed
        here because the output size equals the input size by definition."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            return tuple(d * (k - 1) // 2 for d, k in zip(self.dilation, self.kernel))
        return self.padding

    def check_padding_mode(self, axis: str, size, pad: int, ctx: InferContext) -> None:
        """torch.nn.functional.pad: reflect mirrors the input without its edge, so it needs
        size > pad; circular wraps around at most once, so it needs size ≥ pad; zeros and
        replicate take any padding."""
        if self.padding_mode not in ("reflect", "circular") or pad == 0:
            return
        if self.padding_mode == "reflect":
            ctx.at_least(size, pad + 1, f"reflect padding {pad} needs an input larger than {pad} along {axis} "
                         f"(torch: padding < size), got {sym.fmt(size)}")
        else:
            ctx.at_least(size, pad, f"circular padding {pad} needs an input of at least {pad} along {axis} "
                         f"(torch: padding ≤ size), got {sym.fmt(size)}")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, height, width = require_rank(inputs, 3, "conv", "a C×H×W feature map",
                                               "conv works on images; use `linear` on vectors")
        if isinstance(channels, int) and channels % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {channels} input channels")
        if self.out % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide out={self.out}")
        if self.padding == "same":
            if self.stride != (1, 1):
                raise ShapeError("padding `same` needs stride 1 (PyTorch rejects strided `same` convs)")
            out_h, out_w = height, width
            for axis, size, k, d in (("H", height, self.kernel[0], self.dilation[0]),
                                     ("W", width, self.kernel[1], self.dilation[1])):
                ctx.at_least(size, 1, f"input {axis} must be at least 1")
                total = d * (k - 1)  # torch pads total//2 before and the rest after
                self.check_padding_mode(axis, size, total - total // 2, ctx)
            formula = f"H = {sym.fmt(height)}, W = {sym.fmt(width)} (same padding)"
        else:
            ph, pw = self.pads()
            for axis, size, p in (("H", height, ph), ("W", width, pw)):
                self.check_padding_mode(axis, size, p, ctx)
            out_h, h_text = sliding_window("H", height, self.kernel[0], self.stride[0], ph, self.dilation[0], False,
                                           ctx, "dilated kernel" if self.dilation[0] > 1 else "kernel")
            out_w, w_text = sliding_window("W", width, self.kernel[1], self.stride[1], pw, self.dilation[1], False,
                                           ctx, "dilated kernel" if self.dilation[1] > 1 else "kernel")
            formula = spatial_formula(h_text, w_text)
        per_output = sym.product([sym.floordiv(channels, self.groups), self.kernel[0], self.kernel[1]])
        params = sym.add(sym.mul(self.out, per_output), self.out if self.bias else 0)
        macs = sym.product([self.out, out_h, out_w, per_output])
        return LayerInfo((self.out, out_h, out_w), formula, params=params, macs=macs)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.Conv2d(inputs[0][0], self.out, self.kernel, stride=self.stride,
                         padding=self.padding if isinstance(self.padding, str) else self.padding,
                         dilation=self.dilation, groups=self.groups, bias=self.bias,
                         padding_mode=self.padding_mode)
