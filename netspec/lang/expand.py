"""Expanding the `layers:` list (with blocks, macros, `repeat:` and `$params`) into nodes.

Every problem is collected, not raised, so one run reports all schema errors at once;
the caller raises a single SpecError at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints
from typing_extensions import Annotated

from netspec.errors import MAX_ERRORS_COLLECTED, Diagnostic, Mark, did_you_mean
from netspec.lang import type_params
from netspec.lang.expansion_costs import MAX_EXPANSION_STEPS, MAX_LAYERS, MAX_NESTING, MAX_REPEAT, LeastLayers, use_key
from netspec.lang.exprs import SubstitutionError, substitute
from netspec.lang.init import Rule, looks_like_kind_rules, parse_kind_rules, parse_rule, weighted_kinds
from netspec.lang.ir import LayerNode, Node, Origin, SeqNode
from netspec.lang.macros import MACROS
from netspec.lang.source import YMap, mark_of
from netspec.lang.validation import validate
from netspec.layers import REGISTRY
from netspec.layers.base import describe

NODE_KEYS = ("name", "from", "repeat", "trainable", "init")
REQUIRED = "required"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
# what `from:` names: a layer (`name`), or one output of a split (`name.0`, `name.1`, …)
REFERENCE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[0-9]{1,6})?$"
Reference = Annotated[str, StringConstraints(pattern=REFERENCE)]

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
    from_: Optional[Union[Reference, list[Reference]]] = Field(
        None, alias="from", description="input node name(s), `name.i` for output i of a split; "
        "default: the previous node")
    repeat: int = Field(1, ge=1, le=MAX_REPEAT, description="stack this node N times")
    trainable: bool = Field(True, description="false freezes this node's parameters")
    init: Optional[NodeInit] = Field(None, description="initialisation: a rule for this layer, or "
                                     "{layer type: rule} for the layers inside a block or macro")


_NO_KEYS = NodeKeys()  # an entry with none of NODE_KEYS (read only)


@dataclass
class Block:
    """A user macro from `blocks:`; `params` maps each name to its default or REQUIRED."""

    name: str
    params: dict[str, Any]
    layers: Any
    mark: Mark | None
    broken: bool = False  # its definition failed validation (already reported)
    param_marks: dict[str, Mark] = field(default_factory=dict)  # where each default was written


@dataclass(frozen=True)
class Scope:
    values: dict[str, Any]  # vars, then the innermost block's params
    chain: tuple[str, ...] = ()  # blocks being instantiated, outermost first
    marks: dict[str, Any] = field(default_factory=dict)  # where each block parameter's value was written


class Expander:
    def __init__(self, blocks: dict[str, Block], global_values: dict[str, Any]):
        self.blocks = blocks
        self.global_values = global_values
        self.diagnostics: list[Diagnostic] = []
        self.layer_count = 0
        self.last_layer: Origin | None = None  # the layer counted last, where a budget error points
        self.steps = 0
        self.depth = 0
        self.budget_exceeded = False
        self.failed_names: set[str] = set()
        self._distinct_errors: set[tuple] = set()
        self._errors_seen = 0
        # (block, arguments, chain, depth) → (layers, steps) it expanded to, or None if it failed
        self.block_uses: dict[tuple, tuple[int, int] | None] = {}
        self.kept: list = []  # values whose id() is part of a block_uses key
        self.least = LeastLayers(blocks, NODE_KEYS)  # a lower bound on the layers one use of a block expands to
        self._bare_layers: dict[type, Any] = {}  # layers written without arguments (`- relu`): one each

    def error(self, mark: Mark | None, where: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(mark, where, message, hint))

    def note_failed(self, keys_yaml: Any) -> None:
        """Remember the name of a node that failed, so `from:` it is not reported again."""
        name = keys_yaml.get("name") if isinstance(keys_yaml, dict) else None
        if isinstance(name, str):
            self.failed_names.add(name)

    def count_layers(self, n: int, origin: Origin, why: str = "") -> None:
        self.layer_count += n
        self.last_layer = origin
        if self.layer_count > MAX_LAYERS and not self.budget_exceeded:
            self.budget_exceeded = True
            self.error(origin.mark, origin.path, f"the spec expands to more than {MAX_LAYERS:,} layers{why}",
                       "check `repeat:` counts and blocks that call each other")

    def count_steps(self, n: int, origin: Origin, why: str = "") -> None:
        self.steps += n
        if self.steps > MAX_EXPANSION_STEPS and not self.budget_exceeded:
            self.budget_exceeded = True
            self.error(origin.mark, origin.path, f"the spec expands to more than {MAX_EXPANSION_STEPS:,} "
                       f"layer entries (blocks and repeats inside each other){why}",
                       "check `repeat:` counts and blocks that call each other")

    @property
    def halted(self) -> bool:
        """Over a budget, or enough distinct errors collected: expanding further only costs time."""
        if self.budget_exceeded:
            return True
        for d in self.diagnostics[self._errors_seen:]:
            self._distinct_errors.add((d.mark, d.message))
        self._errors_seen = len(self.diagnostics)
        return len(self._distinct_errors) >= MAX_ERRORS_COLLECTED

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
        if self.depth >= MAX_NESTING:
            self.error(getattr(items, "mark", parent.mark), parent.child(segment, None).path,
                       f"layer lists nest more than {MAX_NESTING} levels deep (blocks, residual and parallel "
                       "inside each other)", "flatten some of the blocks")
            return seq
        self.depth += 1
        try:
            for i, item in enumerate(items):
                if self.halted:
                    break
                node = self.entry(item, parent.child(f"{segment}[{i}]", mark_of(items, i, parent.mark)), scope)
                if node is not None:
                    seq.nodes.append(node)
        finally:
            self.depth -= 1
        return seq

    # -- one entry ------------------------------------------------------------------------------
    def entry(self, item: Any, origin: Origin, scope: Scope) -> Node | None:
        split = self.split_entry(item, origin)
        if split is None:
            return None
        kind, args, keys_yaml = split
        substituted = False
        if kind.startswith("$"):  # `- $act`: a block parameter that names the layer type
            resolved = type_params.resolve(self, kind, args, origin, scope)
            if resolved is None:
                self.note_failed(keys_yaml)
                return None
            kind, args, substituted = resolved
        try:
            args = args if substituted else substitute(args, scope.values)
            if keys_yaml:
                keys_yaml = substitute(keys_yaml, scope.values)
        except SubstitutionError as e:
            self.error(e.mark or origin.mark, f"{origin.path} {kind}", str(e), e.hint)
            self.note_failed(keys_yaml)
            return None
        keys = validate(NodeKeys, keys_yaml, f"{origin.path} {kind}", origin.mark, self.diagnostics) \
            if keys_yaml else _NO_KEYS
        if keys is None:
            self.note_failed(keys_yaml)
            return None
        node = self.copies(kind, args, keys.repeat, origin, scope)
        if node is None:
            self.note_failed(keys_yaml)
            return None
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

    def copies(self, kind: str, args: Any, repeat: int, origin: Origin, scope: Scope) -> Node | None:
        """The node, or `repeat` copies of it in a SeqNode; the budgets are charged for all the
        copies before the second is built (each copy costs what the first did)."""
        layers, steps, errors = self.layer_count, self.steps, len(self.diagnostics)
        first = self.dispatch(kind, args, origin, scope)
        if first is None or self.budget_exceeded:
            return None
        if repeat == 1:
            return first
        if len(self.diagnostics) > errors:
            return None  # every copy would report the same errors again
        more = repeat - 1
        line = f" at line {origin.mark.line}" if origin.mark else ""
        why = f" (`repeat: {repeat:,}`{line} copies all this)"
        if self.layer_count + more * (self.layer_count - layers) > MAX_LAYERS:
            # reported inside the copy, at its last layer, where copying would cross the limit
            self.count_layers(more * (self.layer_count - layers), self.last_layer or origin, why)
        elif self.steps + more * (self.steps - steps) > MAX_EXPANSION_STEPS:
            self.count_steps(more * (self.steps - steps), origin, why)
        if self.budget_exceeded:
            return None
        nodes = [first]
        for copy in range(1, repeat):
            node = self.dispatch(kind, args, Origin(origin.mark, f"{origin.path} (copy {copy + 1})"), scope)
            if node is None or self.budget_exceeded:
                return None
            nodes.append(node)
        return SeqNode(origin, label=f"{kind}×{repeat}", nodes=nodes)

    def split_entry(self, item: Any, origin: Origin):
        if isinstance(item, str):
            return item, None, None  # no keys beside the type: nothing to substitute or validate
        if not isinstance(item, YMap):
            self.error(origin.mark, origin.path,
                       f"expected a layer (a name like `relu`, or `type: args`), got {describe(item)}")
            return None
        types = [k for k in item if k not in NODE_KEYS]
        if len(types) != 1:
            found = ", ".join(f"`{k}`" for k in types) or "only " + ", ".join(f"`{k}`" for k in item)
            self.error(item.mark, origin.path, f"a layer has exactly one type key, found {found}",
                       "put each layer in its own `- ` item" if len(types) > 1
                       else "add the layer type, e.g. `- conv: {...}`")
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
        return kind, item[kind], keys or None

    def dispatch(self, kind: str, args: Any, origin: Origin, scope: Scope) -> Node | None:
        where = f"{origin.path} {kind}"
        self.count_steps(1, origin)
        if self.budget_exceeded:
            return None
        if kind in REGISTRY:
            return self.layer(REGISTRY[kind], args, origin, where)
        if kind in MACROS:
            macro = self.arguments(MACROS[kind], args, origin, where)
            return macro.expand(self, origin, scope, args) if macro is not None else None
        if kind in self.blocks:
            return self.instantiate(self.blocks[kind], args, origin, scope)
        known = self.known_kinds()
        hint = did_you_mean(kind, known)
        if hint is None and str(kind).lower() in ALIASES:
            hint = f"netspec calls it `{ALIASES[str(kind).lower()]}`"
        self.error(origin.mark, origin.path, f"unknown layer type `{kind}`",
                   hint or "see `netspec schema` or docs/spec-language.md")
        return None

    def known_kinds(self) -> list[str]:
        return [*REGISTRY, *MACROS, *self.blocks]

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
        if args is None:  # `- relu`: the same frozen instance serves every such line
            layer = self._bare_layers.get(cls)
            if layer is None:
                layer = self._bare_layers[cls] = self.arguments(cls, args, origin, where)
        else:
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
        key = use_key(block.name, bound, scope.chain, self.depth, self.kept)
        if key in self.block_uses and not self.charge_known_use(block, self.block_uses[key], origin):
            return None
        least = self.least.of(block)
        if self.layer_count + least > MAX_LAYERS:
            self.count_layers(least, origin, f" (block `{block.name}` adds at least {least:,})" if least <= MAX_LAYERS
                              else f" (block `{block.name}` alone expands to more)")
            return None
        layers, steps, errors = self.layer_count, self.steps, len(self.diagnostics)
        inner = Scope({**self.global_values, **bound}, (*scope.chain, block.name),
                      type_params.param_marks(block, args, bound, origin))
        seq = self.sequence(block.layers, origin, block.name, inner, label=block.name)
        failed = len(self.diagnostics) > errors
        self.block_uses[key] = None if failed else (self.layer_count - layers, self.steps - steps)
        return None if failed else seq

    def charge_known_use(self, block: Block, cost: tuple[int, int] | None, origin: Origin) -> bool:
        """False when this use is known to fail (reported already) or to break a budget (reported now).

        The same block with the same arguments at the same depth expands the same way every time:
        a fan-out of blocks using blocks ten times each is refused before it is built."""
        if cost is None:
            return False
        layers, steps = cost
        why = f" (each use of block `{block.name}` adds {layers:,})"
        if self.layer_count + layers > MAX_LAYERS:
            self.count_layers(layers, self.last_layer or origin, why)
        elif self.steps + steps > MAX_EXPANSION_STEPS:
            self.count_steps(steps, origin, why)
        return not self.budget_exceeded

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
                    f"`{block.name}` takes: {', '.join(block.params)}" if block.params
                    else f"`{block.name}` takes no parameters")
                self.error(mark_of(args, name, origin.mark), where,
                           f"unknown parameter `{name}` for block `{block.name}`", hint)
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
