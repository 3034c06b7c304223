"""`se`: squeeze-and-excitation on the current channels (Hu et al. 2018; the seeds' SELayer)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, require_rank
from netspec.progress import plural


@register
class SqueezeExcite(Layer):
    kind = "se"
    has_weights = True
    primary = "reduction"
    torch_equivalent = "SELayer: AdaptiveAvgPool2d(1) → Linear(C, C//r) → ReLU → Linear(C//r, C) → Sigmoid → x·s"
    summary = "Squeeze-and-excitation: rescales each channel by a gate computed from the global mean."
    formula_doc = ("shape unchanged; hidden = C//reduction; params = C·hidden + hidden + hidden·C + C; "
                   "MACs = 2·C·hidden (the two linears)")
    example = "- conv: {out: 32, kernel: 3, padding: 1}\n- se: {reduction: 16}"

    reduction: PositiveInt = Field(16, description="hidden width is C // reduction")

    def hidden(self, channels: int) -> int:
        return channels // self.reduction

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, height, width = require_rank(inputs, 3, "se", "a C×H×W feature map")
        hidden = self.hidden(channels)
        if hidden < 1:
            raise ShapeError(f"reduction {self.reduction} leaves no hidden units for {plural(channels, 'channel')} "
                             f"({channels}//{self.reduction} = 0)", f"use reduction ≤ {channels}")
        params = channels * hidden + hidden + hidden * channels + channels
        formula = f"gate: {channels} → {hidden} → {channels}, same shape"
        return LayerInfo(inputs[0], formula, params=params, macs=2 * channels * hidden)

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.modules import SqueezeExcite as SEModule

        channels = inputs[0][0]
        return SEModule(channels, self.hidden(channels))
