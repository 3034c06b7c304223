"""Shape-only layers: `flatten`, `identity`, `dropout`, `dropout2d`."""

from __future__ import annotations

from pydantic import Field, confloat

from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, require_rank
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
