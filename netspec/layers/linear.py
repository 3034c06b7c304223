"""`linear`: torch.nn.Linear, with in_features inferred."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, shape_text
from netspec.shapes import symbolic as sym


@register
class Linear(Layer):
    kind = "linear"
    has_weights = True
    primary = "out"
    torch_equivalent = "torch.nn.Linear"
    summary = "Fully connected layer on a vector; `in_features` is inferred, never written."
    formula_doc = "out = `out`; params = in·out (+ out bias); MACs = in·out"
    example = "- flatten\n- linear: 10"

    out: PositiveInt = Field(description="output features")
    bias: bool = Field(True, description="add a learnable bias")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        if len(shape) != 1:
            raise ShapeError(f"input has shape {shape_text(shape)}, linear needs a vector",
                             "insert `- flatten` before this layer")
        features = shape[0]
        weights = sym.product([features, self.out])
        params = sym.add(weights, self.out if self.bias else 0)
        if not isinstance(params, int):
            params = sym.labelled(params, f"{sym.fmt(weights)} + {self.out}" if self.bias else sym.fmt(weights))
        formula = f"{sym.fmt(features)} → {self.out}"
        return LayerInfo((self.out,), formula, params=params, macs=weights)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.Linear(inputs[0][0], self.out, bias=self.bias)
