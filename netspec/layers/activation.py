"""Activations: elementwise, no parameters, shape unchanged."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register


class Activation(Layer):
    torch_name: ClassVar[str] = ""  # the torch.nn class
    formula_doc = "shape unchanged; no parameters"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        return LayerInfo(inputs[0], "same shape")

    def torch_kwargs(self) -> dict:
        return {}

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return getattr(nn, self.torch_name)(**self.torch_kwargs())


@register
class ReLU(Activation):
    kind = "relu"
    torch_name = "ReLU"
    torch_equivalent = "torch.nn.ReLU"
    summary = "max(0, x)"
    example = "- conv: {out: 8, kernel: 3}\n- relu"


@register
class ReLU6(Activation):
    kind = "relu6"
    torch_name = "ReLU6"
    torch_equivalent = "torch.nn.ReLU6"
    summary = "min(max(0, x), 6)"
    example = "- conv: {out: 8, kernel: 3}\n- relu6"


@register
class SiLU(Activation):
    kind = "silu"
    torch_name = "SiLU"
    torch_equivalent = "torch.nn.SiLU"
    summary = "x·sigmoid(x) (swish)"
    example = "- conv: {out: 8, kernel: 3}\n- silu"


@register
class Sigmoid(Activation):
    kind = "sigmoid"
    torch_name = "Sigmoid"
    torch_equivalent = "torch.nn.Sigmoid"
    summary = "1/(1 + e^−x)"
    example = "- conv: {out: 8, kernel: 3}\n- sigmoid"


@register
class Tanh(Activation):
    kind = "tanh"
    torch_name = "Tanh"
    torch_equivalent = "torch.nn.Tanh"
    summary = "hyperbolic tangent"
    example = "- conv: {out: 8, kernel: 3}\n- tanh"


@register
class Hardswish(Activation):
    kind = "hardswish"
    torch_name = "Hardswish"
    torch_equivalent = "torch.nn.Hardswish"
    summary = "x·relu6(x + 3)/6 (MobileNetV3)"
    example = "- conv: {out: 8, kernel: 3}\n- hardswish"


@register
class Hardsigmoid(Activation):
    kind = "hardsigmoid"
    torch_name = "Hardsigmoid"
    torch_equivalent = "torch.nn.Hardsigmoid"
    summary = "relu6(x + 3)/6 (MobileNetV3's squeeze-excitation gate)"
    example = "- conv: {out: 8, kernel: 3}\n- hardsigmoid"


@register
class LeakyReLU(Activation):
    kind = "leaky_relu"
    primary = "slope"
    torch_name = "LeakyReLU"
    torch_equivalent = "torch.nn.LeakyReLU"
    summary = "x for x ≥ 0, slope·x otherwise"
    example = "- conv: {out: 8, kernel: 3}\n- leaky_relu: 0.1"

    slope: float = Field(0.01, description="negative slope (torch's negative_slope)")

    def torch_kwargs(self) -> dict:
        return {"negative_slope": self.slope}


@register
class GELU(Activation):
    kind = "gelu"
    primary = "approximate"
    torch_name = "GELU"
    torch_equivalent = "torch.nn.GELU"
    summary = "Gaussian error linear unit"
    example = "- conv: {out: 8, kernel: 3}\n- gelu"

    approximate: Literal["none", "tanh"] = Field("none", description="`tanh` uses the tanh approximation")

    def torch_kwargs(self) -> dict:
        return {"approximate": self.approximate}


class _SoftmaxBase(Activation):
    formula_doc = "shape unchanged; normalises over the channel axis (dim=1 with the batch)"

    def torch_kwargs(self) -> dict:
        return {"dim": 1}


@register
class Softmax(_SoftmaxBase):
    kind = "softmax"
    torch_name = "Softmax"
    torch_equivalent = "torch.nn.Softmax(dim=1)"
    summary = "softmax over the channel / feature axis"
    example = "- flatten\n- linear: 10\n- softmax"


@register
class LogSoftmax(_SoftmaxBase):
    kind = "log_softmax"
    torch_name = "LogSoftmax"
    torch_equivalent = "torch.nn.LogSoftmax(dim=1)"
    summary = "log of softmax over the channel / feature axis (pair with NLL loss)"
    example = "- flatten\n- linear: 10\n- log_softmax"
