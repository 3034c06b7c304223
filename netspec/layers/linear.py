"""`linear`: torch.nn.Linear, with in_features inferred; on a vector, or along one axis when asked."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, shape_text
from netspec.shapes import symbolic as sym


@register
class Linear(Layer):
    kind = "linear"
    has_weights = True
    primary = "out"
    torch_equivalent = "torch.nn.Linear (over: channels — the same Linear applied over the channel axis of a map)"
    summary = ("Fully connected layer on a vector; `in_features` is inferred, never written. On a map or a "
               "token sequence only when asked: `over: last` (the last axis, e.g. channels-last after "
               "`permute`) or `over: channels` (C of C×H×W, at every position).")
    formula_doc = ("out = `out`; params = in·out (+ out bias); MACs = in·out per position "
                   "(× the other axes with `over: last` / `over: channels`)")
    example = ("- conv: {out: 8, kernel: 3}\n- linear: {out: 6, over: channels}\n- permute: [0, 2, 3, 1]\n"
               "- linear: {out: 5, over: last}\n- flatten\n- linear: 10")

    out: PositiveInt = Field(description="output features")
    bias: bool = Field(True, description="add a learnable bias")
    over: Literal["features", "last", "channels"] = Field(
        "features", description="features: a vector only; last: the last axis of any input; "
                                "channels: the first (channel) axis of any input")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        if self.over == "features" and len(shape) != 1:
            raise ShapeError(f"input has shape {shape_text(shape)}, linear needs a vector",
                             "insert `- flatten` before this layer")
        if not shape:
            raise ShapeError("linear needs at least one axis, the input is a scalar")
        axis = -1 if self.over == "last" else 0
        features = shape[axis]
        rest = [d for i, d in enumerate(shape) if i != axis % len(shape)]
        out_shape = (*shape[:-1], self.out) if axis == -1 else (self.out, *shape[1:])
        weights = sym.product([features, self.out])
        params = sym.add(weights, self.out if self.bias else 0)
        if not isinstance(params, int):
            params = sym.labelled(params, f"{sym.fmt(weights)} + {self.out}" if self.bias else sym.fmt(weights))
        formula = f"{sym.fmt(features)} → {self.out}"
        if rest:
            formula += f" at each of {shape_text(tuple(rest))}"
        macs = sym.product([weights, *rest]) if rest else weights  # (a vector keeps its labelled weights)
        return LayerInfo(out_shape, formula, params=params, macs=macs)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        from netspec.compile.modules import ChannelLinear

        shape = inputs[0]
        if self.over == "channels" and len(shape) > 1:
            return ChannelLinear(shape[0], self.out, bias=self.bias)
        return nn.Linear(shape[-1], self.out, bias=self.bias)
