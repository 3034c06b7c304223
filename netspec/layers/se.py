"""`se`: squeeze-and-excitation on the current channels (Hu et al. 2018).

Two forms: `linear` (the SE-ResNet tutorial's SELayer: Linear fc1/fc2 on the pooled vector) and `conv`
(torchvision.ops.SqueezeExcitation: 1×1 Conv2d fc1/fc2 on the pooled map, as MobileNetV3 and
EfficientNet use it). The hidden width is C // reduction (optionally rounded by torchvision's
`_make_divisible`) or given directly.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, require_rank
from netspec.progress import plural

SE_ACTIVATIONS = ("relu", "relu6", "silu", "gelu", "hardswish", "tanh", "sigmoid", "hardsigmoid", "leaky_relu")


def make_divisible(value: float, divisor: int) -> int:
    """torchvision.models._utils._make_divisible (min_value = divisor): the nearest multiple of
    `divisor`, never below it and never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@register
class SqueezeExcite(Layer):
    kind = "se"
    has_weights = True
    primary = "reduction"
    torch_equivalent = ("form linear: SELayer (AdaptiveAvgPool2d(1) → Linear(C, h) → act → Linear(h, C) → gate → x·s); "
                        "form conv: torchvision.ops.SqueezeExcitation (1×1 Conv2d fc1/fc2)")
    summary = ("Squeeze-and-excitation: rescales each channel by a gate computed from the global mean "
               "(the SE-ResNet tutorial's SELayer, or torchvision's SqueezeExcitation with `form: conv`).")
    formula_doc = ("shape unchanged; hidden h = `hidden`, or C//reduction, or _make_divisible(C//reduction, divisor); "
                   "params = C·h + h + h·C + C (both forms); MACs = 2·C·h (the two linears / 1×1 convs)")
    example = ("- conv: {out: 32, kernel: 3, padding: 1}\n- se: {reduction: 16}\n"
               "- se: {reduction: 4, divisor: 8, gate: hardsigmoid, form: conv}   # MobileNetV3\n"
               "- se: {hidden: 4, act: silu, form: conv}                          # EfficientNet")

    reduction: PositiveInt = Field(16, description="hidden width is C // reduction (unless `hidden` is given)")
    hidden: Optional[PositiveInt] = Field(None, description="the hidden width itself (instead of `reduction`)")
    divisor: Optional[PositiveInt] = Field(
        None, description="round C // reduction with torchvision's _make_divisible to a multiple of this")
    act: Literal[SE_ACTIVATIONS] = Field("relu", description="activation between the two linears")
    gate: Literal["sigmoid", "hardsigmoid"] = Field("sigmoid", description="the gate's activation")
    form: Literal["linear", "conv"] = Field(
        "linear", description="linear: nn.Linear fc1/fc2; conv: 1×1 Conv2d fc1/fc2 (torchvision's SqueezeExcitation)")

    @model_validator(mode="after")
    def _one_width(self):
        if self.hidden is not None and {"reduction", "divisor"} & self.model_fields_set:
            raise PydanticCustomError("se_width", "give `hidden` or `reduction` (with `divisor`), not both")
        return self

    def hidden_width(self, channels: int) -> int:
        if self.hidden is not None:
            return self.hidden
        if self.divisor is not None:
            return make_divisible(channels // self.reduction, self.divisor)
        return channels // self.reduction

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, height, width = require_rank(inputs, 3, "se", "a C×H×W feature map")
        hidden = self.hidden_width(channels)
        if hidden < 1:
            raise ShapeError(f"reduction {self.reduction} leaves no hidden units for {plural(channels, 'channel')} "
                             f"({channels}//{self.reduction} = 0)", f"use reduction ≤ {channels}")
        params = channels * hidden + hidden + hidden * channels + channels
        formula = f"gate: {channels} → {hidden} → {channels}, same shape"
        return LayerInfo(inputs[0], formula, params=params, macs=2 * channels * hidden)

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile import modules
        from netspec.layers.base import REGISTRY

        channels = inputs[0][0]
        act = REGISTRY[self.act]().build([inputs[0]], inputs[0])
        gate = REGISTRY[self.gate]().build([inputs[0]], inputs[0])
        if self.form == "conv":
            return modules.SqueezeExcitation(channels, self.hidden_width(channels), act, gate)
        return modules.SqueezeExcite(channels, self.hidden_width(channels), act, gate)
