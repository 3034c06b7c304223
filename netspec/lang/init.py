"""Weight initialisation in the spec (`init:` at top level, or on a node).

    init:                                   # top level: by layer type
      conv: {kaiming_normal: {mode: fan_out, nonlinearity: relu}}
      linear: {weight: {normal: {std: 0.01}}, bias: zeros}
    layers:
      - bn:
        init: {weight: zeros}               # on a layer: a rule for that layer
      - basic: {out: 64}
        init: {conv: xavier_uniform}        # on a block/macro: by layer type, inside it

A rule is an initializer (for the weight) or `{weight: ..., bias: ...}`; an initializer is a
name (`zeros`) or a one-key mapping with its arguments. Defaults are torch.nn.init's own.
Unset means torch's default initialisation of that layer (BatchNorm: weight 1, bias 0).
Nothing here imports torch at module level: `check` validates `init:` without it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError
from pydantic_core import PydanticCustomError

from netspec.errors import did_you_mean

Nonlinearity = Literal["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


class Initializer(BaseModel):
    """An initializer's arguments; the fields are named as torch.nn.init's parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: ClassVar[str]
    min_dims: ClassVar[int] = 1  # fan-based initializers need a weight of rank ≥ 2

    def apply(self, tensor) -> None:
        from torch import nn

        getattr(nn.init, f"{self.name}_")(tensor, **self.model_dump())


class Default(Initializer):
    """Keep the layer's own PyTorch initialisation."""

    name = "default"

    def apply(self, tensor) -> None:
        return None


class KaimingNormal(Initializer):
    name = "kaiming_normal"
    min_dims = 2
    a: float = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Nonlinearity = "leaky_relu"


class KaimingUniform(KaimingNormal):
    name = "kaiming_uniform"


class XavierNormal(Initializer):
    name = "xavier_normal"
    min_dims = 2
    gain: PositiveFloat = 1.0


class XavierUniform(XavierNormal):
    name = "xavier_uniform"


class Orthogonal(Initializer):
    name = "orthogonal"
    min_dims = 2
    gain: PositiveFloat = 1.0


class Normal(Initializer):
    name = "normal"
    mean: float = 0.0
    std: PositiveFloat = 1.0


class TruncNormal(Normal):
    name = "trunc_normal"
    a: float = -2.0
    b: float = 2.0


class Uniform(Initializer):
    name = "uniform"
    a: float = 0.0
    b: float = 1.0


class Constant(Initializer):
    name = "constant"
    value: float = Field(description="the constant")

    def apply(self, tensor) -> None:
        from torch import nn

        nn.init.constant_(tensor, self.value)


class Zeros(Initializer):
    name = "zeros"


class Ones(Initializer):
    name = "ones"


INITIALIZERS: dict[str, type[Initializer]] = {
    cls.name: cls for cls in (Default, KaimingNormal, KaimingUniform, XavierNormal, XavierUniform, Orthogonal,
                              Normal, TruncNormal, Uniform, Constant, Zeros, Ones)
}


def parse_initializer(value: Any) -> Initializer:
    """`zeros`, or `{normal: {std: 0.01}}` (a one-key mapping with the initializer's arguments)."""
    if isinstance(value, str):
        name, args = value, {}
    elif isinstance(value, dict) and len(value) == 1:
        (name, args), = value.items()
        args = {} if args is None else args
    else:
        raise PydanticCustomError("initializer", "expected an initializer name or `{name: {args}}`, got {got}",
                                  {"got": repr(value)})
    if name not in INITIALIZERS:
        hint = did_you_mean(name, INITIALIZERS) or f"one of {', '.join(INITIALIZERS)}"
        raise PydanticCustomError("initializer", "unknown initializer `{name}` ({hint})", {"name": name, "hint": hint})
    if not isinstance(args, dict):
        raise PydanticCustomError("initializer", "arguments of `{name}` must be a mapping", {"name": name})
    try:
        return INITIALIZERS[name].model_validate(args)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PydanticCustomError("initializer", "`{name}`: {where}{msg}",
                                  {"name": name, "where": f"{where}: " if where else "",
                                   "msg": first["msg"][0].lower() + first["msg"][1:]}) from None


class Rule(BaseModel):
    """What to do with one layer's weight and bias."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: Optional[Initializer] = None
    bias: Optional[Initializer] = None


def parse_rule(value: Any) -> Rule:
    if isinstance(value, dict) and value and set(value) <= {"weight", "bias"}:
        return Rule(**{k: parse_initializer(v) for k, v in value.items()})
    return Rule(weight=parse_initializer(value))


def parse_kind_rules(value: Any, kinds) -> dict[str, Rule]:
    if not isinstance(value, dict):
        raise PydanticCustomError("init", "expected a mapping of layer type to rule, got {got}", {"got": repr(value)})
    rules = {}
    for kind, rule in value.items():
        if kind not in kinds:
            hint = did_you_mean(kind, kinds) or f"layer types with weights: {', '.join(sorted(kinds))}"
            raise PydanticCustomError("init", "`{kind}` is not a layer type with weights ({hint})",
                                      {"kind": kind, "hint": hint})
        rules[kind] = parse_rule(rule)
    return rules


def weighted_kinds() -> set[str]:
    """Layer types that own parameters (and so can be initialised)."""
    from netspec.layers import REGISTRY

    return {kind for kind, cls in REGISTRY.items() if getattr(cls, "has_weights", False)}


def looks_like_kind_rules(value: Any) -> bool:
    from netspec.layers import REGISTRY

    return isinstance(value, dict) and bool(value) and all(k in REGISTRY for k in value)


def apply_rule(module, rule: Rule) -> None:
    """Apply `rule` to every parameter of one layer's module and its submodules (se has two
    linears): those named `bias` or `*_bias` take the bias initializer, every other one the weight
    initializer (`weight`, attention's `in_proj_weight`, a class token, a position embedding, a
    layer scale's γ)."""
    for sub in module.modules():
        for name, parameter in sub.named_parameters(recurse=False):
            initializer = rule.bias if name == "bias" or name.endswith("_bias") else rule.weight
            if initializer is None:
                continue
            if parameter.dim() < initializer.min_dims:
                raise ValueError(f"`{initializer.name}` needs a weight with ≥ 2 dimensions, "
                                 f"{type(sub).__name__}.{name} has shape {tuple(parameter.shape)}")
            initializer.apply(parameter.data)
