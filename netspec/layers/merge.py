"""Merges of two or more inputs (`from: [a, b, ...]`): `add`, `mul`, `concat`."""

from __future__ import annotations

from typing import ClassVar

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, shape_text
from netspec.shapes import symbolic as sym


def broadcast(shapes: list[Shape], kind: str, ctx: InferContext) -> Shape:
    """PyTorch broadcasting (a size-1 axis stretches) between inputs of the same rank.

    Ranks must match: with the batch axis in front, torch would align a vector's features with
    a feature map's W axis and mix samples."""
    if len({len(s) for s in shapes}) > 1:
        raise ShapeError(f"{kind} needs inputs of the same rank, got " + " and ".join(shape_text(s) for s in shapes),
                         "flatten the feature map, or pool it to C×1×1 first")
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for axis in range(rank):
        sizes = [s[axis] for s in padded]
        real = [d for d in sizes if d != 1]
        first = real[0] if real else 1
        for other in real[1:]:
            if isinstance(first, int) and isinstance(other, int) and first != other:
                raise ShapeError(f"{kind} needs equal shapes (or size 1 to broadcast), got "
                                 + " and ".join(shape_text(s) for s in shapes))
            ctx.equal(first, other, f"{kind} inputs differ along axis {axis}")
        out.append(first)
    return tuple(out)


class _Elementwise(Layer):
    arity = None
    formula_doc = "shapes equal, or broadcast as in PyTorch (a size-1 axis stretches); no parameters"
    operator: ClassVar[str]  # how the formula column joins the input shapes
    module_name: ClassVar[str]  # the netspec.compile.modules class that computes it

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        shape = broadcast(inputs, self.kind, ctx)
        return LayerInfo(shape, f" {self.operator} ".join(shape_text(s) for s in inputs))

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile import modules

        return getattr(modules, self.module_name)()


@register
class Add(_Elementwise):
    kind = "add"
    torch_equivalent = "torch.add / x + y"
    summary = "Elementwise sum of the inputs named in `from:` (a hand-written skip connection)."
    example = ("- conv: {out: 8, kernel: 3, padding: 1}\n  name: a\n- conv: {out: 8, kernel: 3, padding: 1}\n"
               "  name: b\n- add:\n  from: [a, b]")
    operator = "+"
    module_name = "Add"


@register
class Mul(_Elementwise):
    kind = "mul"
    torch_equivalent = "torch.mul / x * y"
    summary = "Elementwise product of the inputs (C×1×1 gates broadcast over H×W)."
    example = ("- conv: {out: 8, kernel: 3, padding: 1}\n  name: features\n- global_avgpool\n- sigmoid:\n"
               "  name: gate\n- mul:\n  from: [features, gate]")
    operator = "⊙"
    module_name = "Mul"


@register
class Concat(Layer):
    kind = "concat"
    arity = None
    torch_equivalent = "torch.cat(dim=1)"
    summary = "Concatenates the inputs along the channel axis (features for vectors)."
    formula_doc = "C = C₁ + C₂ + …; every other axis must match; no parameters"
    example = ("- conv: {out: 8, kernel: 1}\n  name: a\n- conv: {out: 4, kernel: 3, padding: 1}\n  from: input\n"
               "  name: b\n- concat:\n  from: [a, b]")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        first = inputs[0]
        for other in inputs[1:]:
            if len(other) != len(first):
                raise ShapeError("concat inputs have different ranks: "
                                 + ", ".join(shape_text(s) for s in inputs))
            for axis, (a, b) in enumerate(zip(first[1:], other[1:]), start=1):
                if isinstance(a, int) and isinstance(b, int) and a != b:
                    raise ShapeError("concat joins channels; every other axis must match, got "
                                     + ", ".join(shape_text(s) for s in inputs))
                ctx.equal(a, b, f"concat inputs differ along axis {axis}")
        channels = sym.total(s[0] for s in inputs)
        formula = "C = " + " + ".join(sym.fmt(s[0]) for s in inputs) + f" = {sym.fmt(channels)}"
        return LayerInfo((channels, *first[1:]), formula)

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.modules import Concat as ConcatModule

        return ConcatModule()
