"""Channel plumbing of ShuffleNetV2: `split` (addressable parts) and `channel_shuffle`."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, shape_text
from netspec.shapes import symbolic as sym


def _channels(inputs: list[Shape], kind: str) -> int:
    shape = inputs[0]
    if not shape:
        raise ShapeError(f"{kind} needs channels (C×H×W, or features), got a scalar")
    channels = shape[0]
    if not isinstance(channels, int):
        raise ShapeError(f"{kind} needs a concrete channel count, got {sym.fmt(channels)}")
    return channels


@register
class Split(Layer):
    kind = "split"
    primary = "chunks"
    torch_equivalent = "torch.chunk(x, chunks, dim=1)"
    summary = ("Splits the channels into equal parts that `from:` reads one by one: a split named `parts` "
               "gives `parts.0`, `parts.1`, … (ShuffleNetV2's `x.chunk(2, dim=1)`).")
    formula_doc = ("each part C/chunks×H×W; the row shows the parts stacked (chunks×C/chunks×H×W, a view of "
                   "the input); no parameters, no MACs")
    example = ("- conv: {out: 8, kernel: 3, padding: 1}\n- split: 2\n  name: parts\n"
               "- conv: {out: 4, kernel: 3, padding: 1}\n  from: parts.1\n  name: branch\n"
               "- concat:\n  from: [parts.0, branch]")

    chunks: int = Field(2, ge=2, le=4096, description="how many equal parts (the channels must divide)")

    @property
    def parts(self) -> int:
        """How many outputs `from: NAME.i` may read."""
        return self.chunks

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels = _channels(inputs, "split")
        if channels % self.chunks:
            raise ShapeError(f"{channels} channels do not split into {self.chunks} equal parts",
                             f"use a chunk count that divides {channels}")
        part = (channels // self.chunks, *inputs[0][1:])
        names = ", ".join(f".{i}" for i in range(min(self.chunks, 3))) + (", …" if self.chunks > 3 else "")
        formula = f"C = {channels} → {self.chunks} parts of {shape_text(part)} ({names})"
        return LayerInfo((self.chunks, *part), formula)

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.channel_ops import ChannelSplit

        return ChannelSplit(self.chunks)


@register
class ChannelShuffle(Layer):
    kind = "channel_shuffle"
    primary = "groups"
    torch_equivalent = "torchvision.models.shufflenetv2.channel_shuffle (view, transpose, contiguous, view)"
    summary = "Interleaves the channels of `groups` groups (ShuffleNet's channel shuffle)."
    formula_doc = "shape unchanged; C must divide by groups; no parameters, no MACs"
    example = "- conv: {out: 8, kernel: 3, padding: 1}\n- channel_shuffle: 2"

    groups: PositiveInt = Field(description="channel groups to interleave (C must divide by it)")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels = _channels(inputs, "channel_shuffle")
        if len(inputs[0]) != 3:
            raise ShapeError(f"input has shape {shape_text(inputs[0])}, channel_shuffle needs a C×H×W feature map")
        if channels % self.groups:
            raise ShapeError(f"{channels} channels do not divide into {self.groups} groups",
                             f"use a group count that divides {channels}")
        per = channels // self.groups
        return LayerInfo(inputs[0], f"C = {channels}: {self.groups} groups of {per}, interleaved (same shape)")

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.channel_ops import ChannelShuffle as ShuffleModule

        return ShuffleModule(self.groups)
