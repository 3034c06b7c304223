"""Pooling: `maxpool`, `avgpool`, `adaptive_avgpool`, `global_avgpool`."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from netspec.errors import ShapeError
from netspec.layers.base import (
    InferContext,
    Layer,
    LayerInfo,
    NonNegPair,
    PositivePair,
    Shape,
    register,
    require_rank,
    sliding_window,
    spatial_formula,
)

_NEEDS_MAP = ("a C×H×W feature map", "pooling works on images")


class _WindowPool(Layer):
    primary = "kernel"
    formula_doc = ("H_out = ⌊(H + 2·padding − dilation·(kernel − 1) − 1)/stride⌋ + 1 (dilation is 1 for avgpool); "
                   "with ceil_mode ⌈⌉ instead of ⌊⌋, and the last window is dropped if it would start in the "
                   "padding (PyTorch MaxPool2d docs); stride defaults to kernel; no parameters")

    kernel: PositivePair = Field(description="window size, int or [kh, kw]")
    stride: Optional[PositivePair] = Field(None, description="defaults to kernel")
    padding: NonNegPair = Field((0, 0), description="implicit padding, at most half the window")
    ceil_mode: bool = Field(False, description="round the output size up instead of down")

    def strides(self) -> tuple[int, int]:
        return self.stride or self.kernel

    def dilations(self) -> tuple[int, int]:
        return (1, 1)

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, height, width = require_rank(inputs, 3, self.kind, *_NEEDS_MAP)
        texts, outs = [], []
        for axis, size, k, s, p, d in zip("HW", (height, width), self.kernel, self.strides(),
                                          self.padding, self.dilations()):
            if p > k // 2:  # torch checks the plain kernel, even when dilated
                raise ShapeError(f"padding {p} is more than half the {k}-wide window along {axis} "
                                 "(PyTorch rejects it)")
            out, text = sliding_window(axis, size, k, s, p, d, self.ceil_mode, ctx, "window")
            outs.append(out)
            texts.append(text)
        return LayerInfo((channels, *outs), spatial_formula(*texts))


@register
class MaxPool(_WindowPool):
    kind = "maxpool"
    torch_equivalent = "torch.nn.MaxPool2d"
    summary = "Max over each window; `maxpool: 2` halves H and W."
    example = "- maxpool: 2\n- maxpool: {kernel: 3, stride: 2, padding: 1}"

    dilation: PositivePair = Field((1, 1), description="spacing between window elements")

    def dilations(self) -> tuple[int, int]:
        return self.dilation

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.MaxPool2d(self.kernel, self.strides(), self.padding, self.dilation,
                            ceil_mode=self.ceil_mode)


@register
class AvgPool(_WindowPool):
    kind = "avgpool"
    torch_equivalent = "torch.nn.AvgPool2d"
    summary = "Mean over each window."
    example = "- avgpool: 2\n- avgpool: {kernel: 3, stride: 1, padding: 1, count_include_pad: false}"

    count_include_pad: bool = Field(True, description="count padded zeros in the mean")

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.AvgPool2d(self.kernel, self.strides(), self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad)


@register
class AdaptiveAvgPool(Layer):
    kind = "adaptive_avgpool"
    primary = "output"
    torch_equivalent = "torch.nn.AdaptiveAvgPool2d"
    summary = "Mean-pools any H×W to a fixed output size (torchvision VGG uses 7×7)."
    formula_doc = "H_out, W_out = `output`, whatever the input size; no parameters"
    example = "- adaptive_avgpool: 7\n- adaptive_avgpool: [2, 3]"

    output: PositivePair = Field(description="output size, int or [h, w]")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, height, width = require_rank(inputs, 3, self.kind, *_NEEDS_MAP)
        ctx.at_least(height, 1, "input height must be at least 1")
        oh, ow = self.output
        return LayerInfo((channels, oh, ow), f"H = {oh}, W = {ow} (adaptive)")

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.AdaptiveAvgPool2d(self.output)


@register
class GlobalAvgPool(Layer):
    kind = "global_avgpool"
    torch_equivalent = "torch.nn.AdaptiveAvgPool2d(1)"
    summary = "Mean over H×W: C×H×W → C×1×1 (follow with `flatten`)."
    formula_doc = "C×H×W → C×1×1; no parameters"
    example = "- global_avgpool\n- flatten"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, _, _ = require_rank(inputs, 3, self.kind, *_NEEDS_MAP)
        return LayerInfo((channels, 1, 1), "H = W = 1 (global)")

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.AdaptiveAvgPool2d(1)
