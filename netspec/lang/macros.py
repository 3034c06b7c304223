"""Built-in macros: `vgg`, `residual`, `parallel`, `aux`.

A macro's arguments are a pydantic model like a layer's; instead of a shape rule it has
`expand`, which turns the arguments into graph nodes (using the expander for nested layer
lists, so `$params`, blocks and errors work inside them exactly as at top level).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, PositiveInt, WithJsonSchema
from pydantic_core import PydanticCustomError

from netspec.lang.ir import AuxNode, LayerNode, Origin, ParallelNode, ResidualNode, SeqNode
from netspec.lang.source import mark_of
from netspec.layers.base import REGISTRY, describe


def _layer_list(value):
    if not isinstance(value, list):
        raise PydanticCustomError("layer_list", "expected a list of layers, got {got}", {"got": describe(value)})
    return value  # kept as the YAML list itself so every item keeps its position


# A placeholder: netspec.lang.schema swaps it for a $ref to LayerEntry (pydantic would reject an unknown $ref).
LAYER_LIST_SCHEMA = {"type": "array", "items": {"x-netspec": "LayerEntry"}}
LayerList = Annotated[Any, PlainValidator(_layer_list), WithJsonSchema(LAYER_LIST_SCHEMA)]


class Macro(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    kind: ClassVar[str]
    primary: ClassVar[str | None] = None
    summary: ClassVar[str] = ""
    formula_doc: ClassVar[str] = ""
    example: ClassVar[str] = ""
    example_input: ClassVar[list] = [3, 32, 32]

    def expand(self, expander, origin: Origin, scope, raw) -> Any:
        """Nodes for this macro; `raw` is the YAML it was validated from (for positions)."""
        raise NotImplementedError


MACROS: dict[str, type[Macro]] = {}


def register_macro(cls: type[Macro]) -> type[Macro]:
    MACROS[cls.kind] = cls
    return cls


@register_macro
class VGG(Macro):
    kind = "vgg"
    primary = "cfg"
    summary = ("torchvision's `make_layers`: each number is conv 3×3 (padding 1) [+ bn] + relu, "
               "each `M` a 2×2 max-pool.")
    formula_doc = "per number n: conv(out=n, kernel=3, padding=1) [, bn], relu; per M: maxpool(kernel=2)"
    example = "- vgg: {cfg: [16, M, 32, M], batch_norm: true}"

    cfg: list[Union[PositiveInt, Literal["M"]]] = Field(min_length=1, description="channel counts and `M` pools")
    batch_norm: bool = Field(False, description="insert `bn` after every conv")

    def expand(self, expander, origin: Origin, scope, raw) -> SeqNode | None:
        cfg_yaml = raw.get("cfg") if isinstance(raw, dict) else raw
        per_number = 3 if self.batch_norm else 2
        expander.count_layers(sum(1 if item == "M" else per_number for item in self.cfg), origin)
        if expander.budget_exceeded:  # counted before building: a `cfg` may be a huge shared list
            return None
        nodes = []
        for i, item in enumerate(self.cfg):
            child = origin.child(f"cfg[{i}]", mark_of(cfg_yaml, i, origin.mark))
            if item == "M":
                nodes.append(LayerNode(child, layer=REGISTRY["maxpool"](kernel=(2, 2), stride=(2, 2))))
                continue
            nodes.append(LayerNode(child, layer=REGISTRY["conv"](out=item, kernel=(3, 3), padding=(1, 1))))
            if self.batch_norm:
                nodes.append(LayerNode(child, layer=REGISTRY["bn"]()))
            nodes.append(LayerNode(child, layer=REGISTRY["relu"]()))
        return SeqNode(origin, label="vgg", nodes=nodes)


@register_macro
class Residual(Macro):
    kind = "residual"
    primary = "body"
    summary = ("body(x) + shortcut(x). `shortcut: auto` is the identity when shapes match, else "
               "torchvision's downsample: 1×1 conv (stride = the body's spatial ratio, no bias) + bn.")
    formula_doc = ("output = body output; body and shortcut outputs must have the same shape; "
                   "params and MACs = body's + shortcut's")
    example = ("- conv: {out: 16, kernel: 3, padding: 1}\n"
               "- residual:\n    body:\n      - conv: {out: 32, kernel: 3, stride: 2, padding: 1, bias: false}\n"
               "      - bn\n      - relu\n      - conv: {out: 32, kernel: 3, padding: 1, bias: false}\n      - bn\n"
               "    shortcut: auto\n- relu")

    body: LayerList = Field(description="the residual branch")
    shortcut: Union[Literal["auto", "identity"], LayerList] = Field("auto", description="auto, identity or layers")

    def expand(self, expander, origin: Origin, scope, raw) -> ResidualNode:
        body = expander.sequence(self.body, origin, "body", scope, label="body")
        shortcut = self.shortcut
        if isinstance(shortcut, list):
            shortcut = expander.sequence(shortcut, origin, "shortcut", scope, label="shortcut")
        return ResidualNode(origin, body=body, shortcut=shortcut)


@register_macro
class Parallel(Macro):
    kind = "parallel"
    primary = "paths"
    summary = "Runs several layer lists on the same input and merges them (Inception, Fire)."
    formula_doc = "concat: channels add up, H and W must match; add: all outputs must have the same shape"
    example = ("- parallel:\n    paths:\n      - [conv: {out: 8, kernel: 1}]\n"
               "      - [conv: {out: 8, kernel: 3, padding: 1}]\n    merge: concat")

    paths: list[LayerList] = Field(min_length=2, description="two or more layer lists")
    merge: Literal["concat", "add"] = Field("concat", description="how outputs are combined")

    def expand(self, expander, origin: Origin, scope, raw) -> ParallelNode:
        paths = [expander.sequence(p, origin, f"paths[{i}]", scope, label=f"path{i}")
                 for i, p in enumerate(self.paths)]
        return ParallelNode(origin, paths=paths, merge=self.merge)


@register_macro
class Aux(Macro):
    kind = "aux"
    summary = ("An auxiliary head (GoogLeNet, Inception v3): passes its input through; in training its "
               "`layers` run on that input and add weight · cross-entropy of their class scores to the loss; "
               "in eval and export the head does not run.")
    formula_doc = ("output = input; the head must end in the main output's shape (class scores); "
                   "params = the head's (counted); MACs: the head's are training-only, not in the total")
    example = ("- conv: {out: 8, kernel: 3, padding: 1}\n"
               "- aux:\n    weight: 0.3\n    layers:\n      - global_avgpool\n      - flatten\n"
               "      - linear: 10\n"
               "- global_avgpool\n- flatten\n- linear: 10")

    weight: float = Field(gt=0, description="the head's loss weight: loss = CE(main) + Σ weight · CE(head)")
    layers: LayerList = Field(description="the head, ending in class scores")

    def expand(self, expander, origin: Origin, scope, raw) -> AuxNode:
        head = expander.sequence(self.layers, origin, "layers", scope, label="head")
        return AuxNode(origin, head=head, weight=self.weight)
