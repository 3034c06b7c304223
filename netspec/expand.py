"""Expanding the `layers:` list (with blocks, macros, `repeat:` and `$params`) into nodes.

Every problem is collected, not raised, so one run reports all schema errors at once;
the caller raises a single SpecError at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints
from typing_extensions import Annotated

from netspec.errors import Diagnostic, Mark, did_you_mean
from netspec.exprs import SubstitutionError, substitute
from netspec.graph import LayerNode, Node, Origin, SeqNode
from netspec.init import Rule, looks_like_kind_rules, parse_kind_rules, parse_rule, weighted_kinds
from netspec.layers import REGISTRY
from netspec.layers.base import describe
from netspec.macros import MACROS
from netspec.source import YMap, mark_of
from netspec.validation import validate

MAX_LAYERS = 100_000
MAX_REPEAT = 10_000
NODE_KEYS = ("name", "from", "repeat", "trainable", "init")
REQUIRED = "required"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER)]

# Names people bring from other frameworks, mapped to ours for the "did you mean".
ALIASES = {
    "conv2d": "conv", "convolution": "conv", "dense": "linear", "fc": "linear", "batchnorm": "bn",
    "batchnorm2d": "bn", "batch_norm": "bn", "layernorm": "ln", "groupnorm": "gn", "maxpool2d": "maxpool",
    "max_pool": "maxpool", "avgpool2d": "avgpool", "avg_pool": "avgpool", "pool": "maxpool",
    "adaptiveavgpool2d": "adaptive_avgpool", "gap": "global_avgpool", "cat": "concat", "sum": "add",
    "leakyrelu": "leaky_relu", "swish": "silu", "logsoftmax": "log_softmax", "squeeze_excite": "se",
    "block": "residual", "sequential": "a plain list of layers",
}


def _node_init(value):
    if looks_like_kind_rules(value):
        return parse_kind_rules(value, weighted_kinds())
    return parse_rule(value)


NodeInit = Annotated[Any, PlainValidator(_node_init, json_schema_input_type=Union[str, dict[str, Any]])]


class NodeKeys(BaseModel):
    """Keys that may sit beside a layer's type key."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: Optional[Identifier] = Field(None, description="a name other layers' `from:` can refer to")
    from_: Optional[Union[Identifier, list[Identifier]]] = Field(
        None, alias="from", description="input node name(s); default: the previous node")
    repeat: int = Field(1, ge=1, le=MAX_REPEAT, description="stack this node N times")
    trainable: bool = Field(True, description="false freezes this node's parameters")
    init: Optional[NodeInit] = Field(None, description="initialisation: a rule for this layer, or "
                                     "{layer type: rule} for the layers inside a block or macro")


@dataclass
class Block:
    """A user macro from `blocks:`; `params` maps each name to its default or REQUIRED."""

    name: str
    params: dict[str, Any]
    layers: Any
    mark: Mark | None
    broken: bool = False  # its definition failed validation (already reported)


@dataclass(frozen=True)
class Scope:
    values: dict[str, Any]  # vars, then the innermost block's params
    chain: tuple[str, ...] = ()  # blocks being instantiated, outermost first


class Expander:
    def __init__(self, blocks: dict[str, Block], global_values: dict[str, Any]):
        self.blocks = blocks
        self.global_values = global_values
        self.diagnostics: list[Diagnostic] = []
        self.layer_count = 0
        self.budget_exceeded = False
        self.failed_names: set[str] = set()

    def error(self, mark: Mark | None, where: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(mark, where, message, hint))

    def note_failed(self, keys_yaml: Any) -> None:
        """Remember the name of a node that failed, so `from:` it is not reported again."""
        name = keys_yaml.get("name") if isinstance(keys_yaml, dict) else None
        if isinstance(name, str):
            self.failed_names.add(name)

    def count_layers(self, n: int, origin: Origin) -> None:
        self.layer_count += n
        if self.layer_count > MAX_LAYERS and not self.budget_exceeded:
            self.budget_exceeded = True
            self.error(origin.mark, origin.path, f"the spec expands to more than {MAX_LAYERS:,} layers",
                       "check `repeat:` counts and blocks that call each other")

    # -- lists ----------------------------------------------------------------------------------
    def sequence(self, items: Any, parent: Origin, segment: str, scope: Scope, label: str) -> SeqNode:
        """Expand a YAML list of layers; children read `parent.path › segment[i]`."""
        seq = SeqNode(parent, label=label)
        if not isinstance(items, list):
            self.error(getattr(items, "mark", parent.mark), parent.child(segment, None).path,
                       f"expected a list of layers, got {describe(items)}")
            return seq
        if not items:
            self.error(getattr(items, "mark", parent.mark), parent.child(segment, None).path, "the layer list is empty")
        for i, item in enumerate(items):
            if self.budget_exceeded:
                break
            node = self.entry(item, parent.child(f"{segment}[{i}]", mark_of(items, i, parent.mark)), scope)
            if node is not None:
                seq.nodes.append(node)
        return seq

    # -- one entry ------------------------------------------------------------------------------
    def entry(self, item: Any, origin: Origin, scope: Scope) -> Node | None:
        split = self.split_entry(item, origin)
        if split is None:
            return None
        kind, args, keys_yaml = split
        try:
            args = substitute(args, scope.values)
            keys_yaml = substitute(keys_yaml, scope.values)
        except SubstitutionError as e:
            self.error(e.mark or origin.mark, f"{origin.path} {kind}", str(e), e.hint)
            self.note_failed(keys_yaml)
            return None
        keys = validate(NodeKeys, keys_yaml, f"{origin.path} {kind}", origin.mark, self.diagnostics)
        if keys is None:
            self.note_failed(keys_yaml)
            return None
        copies = []
        for copy in range(keys.repeat):
            copy_origin = origin if copy == 0 else Origin(origin.mark, f"{origin.path} (copy {copy + 1})")
            node = self.dispatch(kind, args, copy_origin, scope)
            if node is None or self.budget_exceeded:
                self.note_failed(keys_yaml)
                return None
            copies.append(node)
        node = copies[0] if keys.repeat == 1 else SeqNode(origin, label=f"{kind}×{keys.repeat}", nodes=copies)
        if isinstance(keys.init, Rule) and not isinstance(node, LayerNode):
            self.error(keys_yaml.value_marks.get("init", origin.mark), f"{origin.path} {kind}",
                       f"`init:` on {kind} (several layers) maps layer types to rules",
                       "e.g. init: {conv: kaiming_normal, bn: {weight: ones}}")
            return None
        node.init = keys.init
        node.name = keys.name
        node.sources = [keys.from_] if isinstance(keys.from_, str) else keys.from_
        node.trainable = keys.trainable
        node.from_mark = keys_yaml.value_marks.get("from", origin.mark) if isinstance(keys_yaml, YMap) else origin.mark
        return node

    def split_entry(self, item: Any, origin: Origin):
        if isinstance(item, str):
            return item, None, YMap(origin.mark)
        if not isinstance(item, YMap):
            self.error(origin.mark, origin.path,
                       f"expected a layer (a name like `relu`, or `type: args`), got {describe(item)}")
            return None
        types = [k for k in item if k not in NODE_KEYS]
        if len(types) != 1:
            found = ", ".join(f"`{k}`" for k in types) or "only " + ", ".join(f"`{k}`" for k in item)
            self.error(item.mark, origin.path, f"a layer has exactly one type key, found {found}",
                       "put each layer in its own `- ` item" if len(types) > 1 else "add the layer type, e.g. `- conv: {...}`")
            return None
        kind = types[0]
        if not isinstance(kind, str):
            self.error(item.mark, origin.path, f"a layer type is a name, got {describe(kind)}")
            return None
        keys = YMap(item.mark)
        for k in NODE_KEYS:
            if k in item:
                keys[k] = item[k]
                keys.key_marks[k], keys.value_marks[k] = item.key_marks[k], item.value_marks[k]
        origin_mark = item.key_marks.get(kind, item.mark)
        return kind, item[kind], keys if keys else YMap(origin_mark)

    def dispatch(self, kind: str, args: Any, origin: Origin, scope: Scope) -> Node | None:
        where = f"{origin.path} {kind}"
        if kind in REGISTRY:
            return self.layer(REGISTRY[kind], args, origin, where)
        if kind in MACROS:
            macro = self.arguments(MACROS[kind], args, origin, where)
            return macro.expand(self, origin, scope, args) if macro is not None else None
        if kind in self.blocks:
            return self.instantiate(self.blocks[kind], args, origin, scope)
        known = [*REGISTRY, *MACROS, *self.blocks]
        hint = did_you_mean(kind, known)
        if hint is None and str(kind).lower() in ALIASES:
            hint = f"netspec calls it `{ALIASES[str(kind).lower()]}`"
        self.error(origin.mark, origin.path, f"unknown layer type `{kind}`", hint or "see `netspec schema` or docs/spec-language.md")
        return None

    def arguments(self, cls, args: Any, origin: Origin, where: str):
        if args is None:
            data: Any = YMap(origin.mark)
        elif isinstance(args, dict):
            data = args
        elif cls.primary is not None:
            data = {cls.primary: args}
        else:
            fields = list(cls.model_fields)
            hint = f"write `- {cls.kind}`" if not fields else f"give a mapping: {cls.kind}: {{{fields[0]}: ...}}"
            self.error(origin.mark, where, f"{cls.kind} takes no short argument, got {describe(args)}", hint)
            return None
        return validate(cls, data, where, origin.mark, self.diagnostics)

    def layer(self, cls, args: Any, origin: Origin, where: str) -> LayerNode | None:
        layer = self.arguments(cls, args, origin, where)
        if layer is None:
            return None
        self.count_layers(1, origin)
        return LayerNode(origin, layer=layer)

    # -- user blocks ----------------------------------------------------------------------------
    def instantiate(self, block: Block, args: Any, origin: Origin, scope: Scope) -> Node | None:
        where = f"{origin.path} {block.name}"
        if block.broken:
            return None
        if block.name in scope.chain:
            cycle = " → ".join((*scope.chain[scope.chain.index(block.name):], block.name))
            self.error(origin.mark, where, f"block `{block.name}` uses itself ({cycle})",
                       "a block cannot contain itself, directly or through other blocks")
            return None
        bound = self.bind(block, args, origin, where)
        if bound is None:
            return None
        inner = Scope({**self.global_values, **bound}, (*scope.chain, block.name))
        seq = self.sequence(block.layers, origin, block.name, inner, label=block.name)
        return seq

    def bind(self, block: Block, args: Any, origin: Origin, where: str) -> dict | None:
        required = [p for p, default in block.params.items() if default == REQUIRED]
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            if len(required) != 1:
                self.error(origin.mark, where, f"block `{block.name}` takes named parameters, got {describe(args)}",
                           f"write {block.name}: {{{', '.join(f'{p}: ...' for p in block.params)}}}")
                return None
            args = {required[0]: args}
        ok = True
        for name in args:
            if name not in block.params:
                ok = False
                hint = did_you_mean(name, block.params) or (
                    f"`{block.name}` takes: {', '.join(block.params)}" if block.params else f"`{block.name}` takes no parameters")
                self.error(mark_of(args, name, origin.mark), where, f"unknown parameter `{name}` for block `{block.name}`", hint)
        for name in required:
            if name not in args:
                ok = False
                self.error(origin.mark, where, f"block `{block.name}` needs parameter `{name}`",
                           f"defined at line {block.mark.line}" if block.mark else None)
        if not ok:
            return None
        try:
            defaults = {p: substitute(v, self.global_values) for p, v in block.params.items() if p not in args}
        except SubstitutionError as e:
            self.error(block.mark, f"blocks.{block.name}.params", str(e), e.hint)
            return None
        return {**defaults, **args}
