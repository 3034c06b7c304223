"""The layer registry: one pydantic class per layer type.

Each class holds, in one place, everything netspec knows about that layer: its fields (the
YAML arguments, validated strictly), its shape rule (`infer`), parameter/buffer counts and
MACs, the output-size formula text, and its torch builder (`build`, which imports torch
lazily so `netspec check` never does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union

from annotated_types import Len
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PlainValidator, PositiveInt
from pydantic_core import PydanticCustomError

from netspec.errors import ShapeError
from netspec.shapes.symbolic import Dim, fmt

Shape = tuple  # tuple[Dim, ...], the batch dimension excluded

REGISTRY: dict[str, type["Layer"]] = {}


def register(cls: type["Layer"]) -> type["Layer"]:
    if cls.kind in REGISTRY:
        raise RuntimeError(f"layer type `{cls.kind}` registered twice")
    REGISTRY[cls.kind] = cls
    return cls


@dataclass
class LayerInfo:
    """What a shape rule returns for one node."""

    shape: Shape
    formula: str = ""
    params: Dim = 0
    buffers: Dim = 0
    macs: Dim = 0  # multiply-accumulates of matmul-like ops (conv, linear), batch 1


@dataclass
class Constraint:
    """A condition on symbolic input sizes: `value >= bound`, or `value == other`."""

    value: Dim
    bound: Dim
    relation: Literal[">=", "=="]
    reason: str
    origin: Any = None  # set by the walker


@dataclass
class InferContext:
    """Passed to every shape rule; collects conditions that symbolic sizes must meet."""

    constraints: list[Constraint] = field(default_factory=list)
    origin: Any = None

    def at_least(self, value: Dim, bound: int, message: str, hint: str | None = None) -> None:
        """Require value >= bound; `message` is the error for a concrete size."""
        if isinstance(value, int):
            if value < bound:
                raise ShapeError(message, hint)
        else:
            self.constraints.append(Constraint(value, bound, ">=", message, self.origin))

    def equal(self, a: Dim, b: Dim, message: str, hint: str | None = None) -> None:
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                raise ShapeError(message, hint)
        elif a != b:
            self.constraints.append(Constraint(a, b, "==", message, self.origin))


class Layer(BaseModel):
    """Base of every layer type. Subclasses set `kind` and define fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    kind: ClassVar[str]
    primary: ClassVar[str | None] = None  # field filled by the short form `linear: 120`
    arity: ClassVar[int | None] = 1  # number of inputs; None = two or more (merges)
    has_weights: ClassVar[bool] = False  # owns parameters that `init:` can set
    torch_equivalent: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    formula_doc: ClassVar[str] = ""
    example: ClassVar[str] = ""  # a runnable spec fragment for the docs (tested)
    example_input: ClassVar[list] = [3, 32, 32]

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        raise NotImplementedError

    def build(self, inputs: list[Shape], output: Shape):
        """Return the torch.nn.Module for this layer (imports torch lazily)."""
        raise NotImplementedError

    def label(self) -> str:
        """`conv(out=6, kernel=5, padding=2)`: the arguments as written, defaults omitted."""
        args = []
        for name in type(self).model_fields:
            if name in self.model_fields_set:
                args.append(f"{name}={_short(getattr(self, name))}")
        return f"{self.kind}({', '.join(args)})" if args else self.kind


def _short(value) -> str:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])
    if isinstance(value, tuple):
        return "×".join(str(v) for v in value)
    return str(value)


# -- argument types --------------------------------------------------------------------------

def describe(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}' (text)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({type(value).__name__})"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair_validator(minimum: int):
    def check(value) -> tuple[int, int]:
        if _is_int(value):
            pair = (value, value)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
            pair = (value[0], value[1])
        else:
            raise PydanticCustomError("pair", "expected an integer or a [h, w] pair of integers, got {got}",
                                      {"got": describe(value)})
        if min(pair) < minimum:
            raise PydanticCustomError("pair_min", "must be ≥ {minimum}, got {got}",
                                      {"minimum": minimum, "got": _short(pair)})
        return pair
    return check


_PositivePairInput = Union[PositiveInt, Annotated[list[PositiveInt], Len(2, 2)]]
_NonNegPairInput = Union[NonNegativeInt, Annotated[list[NonNegativeInt], Len(2, 2)]]
PositivePair = Annotated[tuple[int, int], PlainValidator(_pair_validator(1), json_schema_input_type=_PositivePairInput)]
NonNegPair = Annotated[tuple[int, int], PlainValidator(_pair_validator(0), json_schema_input_type=_NonNegPairInput)]


def _padding(value):
    if value in ("same", "valid"):
        return value
    if isinstance(value, str):
        raise PydanticCustomError("padding", "expected an integer, [h, w], `same` or `valid`, got {got}",
                                  {"got": describe(value)})
    return _pair_validator(0)(value)


Padding = Annotated[Union[tuple[int, int], Literal["same", "valid"]],
                    PlainValidator(_padding, json_schema_input_type=Union[_NonNegPairInput, Literal["same", "valid"]])]


# -- helpers shared by shape rules ------------------------------------------------------------

def shape_text(shape: Shape) -> str:
    return "×".join(fmt(d, grouped=True) for d in shape) if shape else "scalar"


def require_rank(inputs: list[Shape], rank: int, kind: str, what: str, hint: str | None = None) -> Shape:
    shape = inputs[0]
    if len(shape) != rank:
        raise ShapeError(f"input has shape {shape_text(shape)}, {kind} needs {what}", hint)
    return shape


def sliding_window(label: str, size: Dim, kernel: int, stride: int, pad: int, dilation: int,
                   ceil_mode: bool, ctx: InferContext, what: str) -> tuple[Dim, str]:
    """Output size of a conv/pool window along one axis, and its formula with numbers.

    PyTorch's rule (Conv2d/MaxPool2d docs): ⌊(H + 2p − d·(k − 1) − 1)/s⌋ + 1; with ceil_mode
    the last window is dropped when it would start inside the right padding.
    """
    from netspec.shapes import symbolic as sym

    effective = dilation * (kernel - 1) + 1
    padded = sym.add(size, 2 * pad)
    # Without ceil_mode the window must fit; with it, a window may overhang as long as it starts
    # inside the padded input (⌈(padded − effective)/stride⌉ + 1 ≥ 1).
    slack = stride - 1 if ceil_mode else 0
    ctx.at_least(sym.add(sym.sub(padded, effective), slack), 0,
                 f"{what} {effective} is larger than the padded input {fmt(padded)} along {label} "
                 f"({fmt(size)} + 2·{pad})")
    numerator = sym.sub(padded, effective)
    out = sym.add(sym.ceildiv(numerator, stride) if ceil_mode else sym.floordiv(numerator, stride), 1)
    note = ""
    if ceil_mode and isinstance(out, int) and isinstance(size, int) and (out - 1) * stride >= size + pad:
        out -= 1
        note = " − 1 (last window starts in the padding)"
        if out < 1:
            raise ShapeError(f"{what} {effective} leaves no output along {label} (input {size}, padding {pad})")
    elif ceil_mode and not isinstance(out, int) and pad + stride > effective:
        note = " (ceil_mode's last-window rule is not tracked symbolically)"
    term = f"{kernel}" if dilation == 1 else f"{dilation}·({kernel} − 1) − 1"
    lo, hi = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    text = f"{label} = {lo}({fmt(size)} + 2·{pad} − {term})/{stride}{hi} + 1{note} = {fmt(out)}"
    return out, text


def spatial_formula(h_text: str, w_text: str) -> str:
    """One formula when both axes read the same, else both."""
    if h_text[1:] == w_text[1:]:
        return f"{h_text} (W same)"
    return f"{h_text}; {w_text}"
