"""Shape-only and elementwise layers: `flatten`, `identity`, `dropout`, `dropout2d`, `stochastic_depth`,
`layer_scale`, `permute`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, confloat

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, require_rank, shape_text
from netspec.shapes import symbolic as sym

Probability = confloat(ge=0, lt=1)


@register
class Flatten(Layer):
    kind = "flatten"
    torch_equivalent = "torch.nn.Flatten"
    summary = "Flattens C×H×W into one vector of C·H·W features (the batch axis is kept)."
    formula_doc = "features = C·H·W"
    example = "- flatten"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        features = sym.product(shape)
        factors = "·".join(sym.fmt(d, grouped=True) for d in shape)
        formula = f"{factors} = {features:,}" if isinstance(features, int) else factors
        return LayerInfo((features,), formula)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.Flatten()


@register
class Identity(Layer):
    kind = "identity"
    torch_equivalent = "torch.nn.Identity"
    summary = "Passes its input through (a placeholder or a named tap point)."
    formula_doc = "shape unchanged"
    example = "- identity"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        return LayerInfo(inputs[0], "same shape")

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.Identity()


class _DropoutBase(Layer):
    primary = "p"
    formula_doc = "shape unchanged; active only in training"

    p: Probability = Field(0.5, description="drop probability, 0 ≤ p < 1")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        return LayerInfo(inputs[0], "same shape")


@register
class Dropout(_DropoutBase):
    kind = "dropout"
    torch_equivalent = "torch.nn.Dropout"
    summary = "Zeroes each element with probability p during training."
    example = "- dropout: 0.5"

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.Dropout(self.p)


@register
class Dropout2d(_DropoutBase):
    kind = "dropout2d"
    torch_equivalent = "torch.nn.Dropout2d"
    summary = "Zeroes whole channels with probability p during training."
    example = "- dropout2d: 0.2"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        require_rank(inputs, 3, self.kind, "a C×H×W feature map", "use `dropout` on vectors")
        return LayerInfo(inputs[0], "same shape")

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.Dropout2d(self.p)


@register
class StochasticDepth(Layer):
    kind = "stochastic_depth"
    primary = "p"
    torch_equivalent = "torchvision.ops.StochasticDepth"
    summary = ("Drops the whole residual branch of a sample (`row`) or of the batch (`batch`) with probability p "
               "in training, scaling survivors by 1/(1 − p); the identity in eval. Last in a residual body.")
    formula_doc = "shape unchanged; no parameters; active only in training"
    example = ("- conv: {out: 8, kernel: 3, padding: 1}\n- residual:\n    body:\n"
               "      - conv: {out: 8, kernel: 3, padding: 1}\n      - stochastic_depth: {p: 0.2, mode: row}\n"
               "    shortcut: identity")

    p: confloat(ge=0, le=1) = Field(description="drop probability, 0 ≤ p ≤ 1")
    mode: Literal["row", "batch"] = Field("row", description="row: per sample; batch: the whole batch at once")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        return LayerInfo(inputs[0], "same shape")

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.modules import StochasticDepth as Module

        return Module(self.p, self.mode)


@register
class LayerScale(Layer):
    kind = "layer_scale"
    has_weights = True
    primary = "value"
    torch_equivalent = "ConvNeXt's CNBlock.layer_scale: nn.Parameter(torch.ones(C, 1, 1) * value) · x"
    summary = "Multiplies each channel by a learnable scale γ, initially `value` (ConvNeXt's layer scale)."
    formula_doc = "shape unchanged; params = C (γ has shape C×1×1 on C×H×W, C on a vector)"
    example = "- conv: {out: 8, kernel: 3}\n- layer_scale: 1e-6"

    value: float = Field(1e-6, description="the initial value of every γ")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        if not shape:
            raise ShapeError("layer_scale needs a channel axis, the input is a scalar")
        return LayerInfo(shape, f"γ: {shape[0]} channels, same shape", params=shape[0])

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.modules import LayerScale as Module

        shape = inputs[0]
        return Module((shape[0],) + (1,) * (len(shape) - 1), self.value)


@register
class Permute(Layer):
    kind = "permute"
    primary = "dims"
    torch_equivalent = "torchvision.ops.Permute"
    summary = ("Reorders the axes (torch.permute); `dims` counts the batch axis, which stays first: "
               "[0, 2, 3, 1] makes C×H×W channels-last (H×W×C), [0, 3, 1, 2] turns it back.")
    formula_doc = "output axis i = input axis dims[i] (batch axis 0 excluded from the shape); no parameters"
    example = "- conv: {out: 8, kernel: 3}\n- permute: [0, 2, 3, 1]\n- permute: [0, 3, 1, 2]"

    dims: list[int] = Field(min_length=1, description="the new order of the axes, batch axis 0 first")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        rank = len(shape) + 1
        if sorted(self.dims) != list(range(rank)):
            raise ShapeError(f"dims {self.dims} is not an order of the {rank} axes of a batch of {shape_text(shape)}",
                             f"give each of 0..{rank - 1} once, batch axis 0 first")
        if self.dims[0] != 0:
            raise ShapeError(f"dims {self.dims} moves the batch axis", "keep 0 first: permute the axes after it")
        out = tuple(shape[d - 1] for d in self.dims[1:])
        return LayerInfo(out, f"{shape_text(shape)} → {shape_text(out)}")

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.modules import Permute as Module

        return Module(self.dims)
