"""Normalisation layers: `bn` (BatchNorm1d/2d by rank), `ln` (LayerNorm over all axes, the channels or the
last axis), `gn` (GroupNorm)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, confloat

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, shape_text
from netspec.progress import plural
from netspec.shapes import symbolic as sym


@register
class BatchNorm(Layer):
    kind = "bn"
    has_weights = True
    torch_equivalent = "torch.nn.BatchNorm1d / BatchNorm2d (by input rank)"
    summary = "Batch normalisation over the channel axis (features for vectors)."
    formula_doc = ("shape unchanged; params = 2·C (weight, bias) when affine; "
                   "buffers = 2·C + 1 (running mean/var, num_batches_tracked)")
    example = "- conv: {out: 8, kernel: 3}\n- bn"

    eps: PositiveFloat = Field(1e-5, description="added to the variance for numerical stability")
    momentum: confloat(ge=0, le=1) = Field(0.1, description="weight of the current batch in the running statistics")
    affine: bool = Field(True, description="learn a per-channel scale (weight) and shift (bias)")
    track_running_stats: bool = Field(True, description="keep running mean/var buffers, used in eval mode")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        if len(shape) not in (1, 2, 3):
            raise ShapeError(f"input has shape {shape_text(shape)}, bn needs C, C×L or C×H×W")
        channels = shape[0]
        params = 2 * channels if self.affine else 0
        buffers = 2 * channels + 1 if self.track_running_stats else 0
        return LayerInfo(shape, "same shape", params=params, buffers=buffers)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        cls = nn.BatchNorm2d if len(inputs[0]) == 3 else nn.BatchNorm1d
        return cls(inputs[0][0], eps=self.eps, momentum=self.momentum, affine=self.affine,
                   track_running_stats=self.track_running_stats)


@register
class LayerNorm(Layer):
    kind = "ln"
    has_weights = True
    torch_equivalent = ("torch.nn.LayerNorm; over: channels on C×H×W = torchvision's convnext.LayerNorm2d "
                        "(permute to channels-last, LayerNorm(C), permute back)")
    summary = ("Layer normalisation over every non-batch axis (`over: all`), over the channel axis of a map "
               "(`over: channels`, ConvNeXt's LayerNorm2d) or over the last axis (`over: last`: channels-last "
               "maps, token features).")
    formula_doc = ("shape unchanged; params = 2·numel(input) (all), 2·C (channels) or 2·last axis (last) "
                   "when elementwise_affine")
    example = ("- conv: {out: 8, kernel: 3}\n- ln\n- ln: {over: channels, eps: 1e-6}\n"
               "- permute: [0, 2, 3, 1]\n- ln: {over: last, eps: 1e-6}")

    eps: PositiveFloat = Field(1e-5, description="added to the variance for numerical stability")
    elementwise_affine: bool = Field(True, description="learn a scale and shift for every normalised element")
    over: Literal["all", "channels", "last"] = Field(
        "all", description="all: every non-batch axis; channels: the channel axis (C of C×H×W); last: the last axis")

    def normalised(self, shape: Shape) -> Shape:
        if not shape:
            raise ShapeError("ln needs at least one axis, the input is a scalar")
        return tuple(shape) if self.over == "all" else (shape[0],) if self.over == "channels" else (shape[-1],)

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        axes = self.normalised(shape)
        if any(not isinstance(d, int) for d in axes):
            raise ShapeError(f"ln normalises over {shape_text(axes)}, which depends on the input size",
                             "give a concrete input size (--input CxHxW)")
        params = 2 * sym.product(axes) if self.elementwise_affine else 0
        formula = "same shape" if self.over == "all" else f"same shape, normalised over {shape_text(axes)}"
        return LayerInfo(shape, formula, params=params)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        from netspec.compile.modules import ChannelLayerNorm

        axes = list(self.normalised(inputs[0]))
        cls = ChannelLayerNorm if self.over == "channels" and len(inputs[0]) > 1 else nn.LayerNorm
        return cls(axes, eps=self.eps, elementwise_affine=self.elementwise_affine)


@register
class GroupNorm(Layer):
    kind = "gn"
    has_weights = True
    primary = "groups"
    torch_equivalent = "torch.nn.GroupNorm"
    summary = "Group normalisation: channels split into `groups` normalised groups."
    formula_doc = ("shape unchanged; params = 2·C when affine; groups must divide C; "
                   "on a vector (C features, torch's N×C) the features are the channels")
    example = ("- conv: {out: 8, kernel: 3}\n- gn: 4\n- global_avgpool\n- flatten\n"
               "- gn: 2                       # on the 8-feature vector")

    groups: PositiveInt = Field(description="number of channel groups")
    eps: PositiveFloat = Field(1e-5, description="added to the variance for numerical stability")
    affine: bool = Field(True, description="learn a per-channel scale (weight) and shift (bias)")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = inputs[0]
        # nn.GroupNorm takes (N, C, *): a vector's features are its channels, as for bn
        if len(shape) not in (1, 2, 3):
            raise ShapeError(f"input has shape {shape_text(shape)}, gn needs C, C×L or C×H×W")
        if shape[0] % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {plural(shape[0], 'channel')}")
        return LayerInfo(shape, "same shape", params=2 * shape[0] if self.affine else 0)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.GroupNorm(self.groups, inputs[0][0], eps=self.eps, affine=self.affine)
