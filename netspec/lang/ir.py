"""The IR: the expanded spec as one tree of nodes, each remembering the YAML it came from.

Macros and user blocks are expanded into these nodes (netspec.lang.expand); every later stage
walks this same tree: shape inference (`Node.infer`, keyed by node in `Report.shapes`), the
compiler (`Node.compile`, giving a node → module mapping), reference checks and docs
(`walk` / `children()`). Nodes are hashed by identity, so they can key those mappings.

Each kind of node is one class carrying everything about that kind, as each layer class
carries its shape rule and its builder:

* `children()` — the nodes inside it, in order (what `walk` visits);
* `infer(walker, inputs, depth, trainable) -> NodeShapes` — its shape-inference step; the
  walker (netspec.shapes.inference.Walker) infers children (`walker.node` for a list item,
  `walker.part` for a body or path), writes rows (`group`, `merge_row`), runs a layer's shape
  rule (`layer_info`) and turns a ShapeError into a located SpecError (`failure`);
* `compile(compiler, shapes, rules) -> nn.Module` — its compile step; the compiler
  (netspec.compile.compiler.Compiler) compiles children (`compiler.node`, which applies
  `init:` and `trainable:`) and knows every node's shapes (`compiler.shapes`). torch is
  imported inside, so `netspec check` never loads it.

To add a container kind, write one `Node` subclass here with those three methods (override
`inferred_children` too if inference adds nodes, as `shortcut: auto` does), its torch module in
netspec/compile/modules.py if torch has none, and a macro in netspec/lang/macros.py that expands
the YAML into it. Nothing else switches on node kinds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, Union

from netspec.errors import Mark, ShapeError
from netspec.layers import REGISTRY
from netspec.layers.base import Layer, Shape, shape_text
from netspec.shapes import symbolic as sym
from netspec.shapes.node_shapes import NodeShapes

INPUT_NAME = "input"  # what `from:` calls a list's input


def parse_reference(text: str) -> tuple[str, int | None]:
    """`from:` text → (name, part): `parts.1` → ("parts", 1), `conv1` → ("conv1", None)."""
    name, dot, index = text.partition(".")
    return (name, int(index)) if dot else (name, None)


@dataclass(frozen=True)
class Origin:
    """Where a node was written, and how expansion reached it.

    `path` reads like `layers[4] › basic[0] › body[2]`: the top-level entry, then each
    macro/block level down to the line that defines the node; `mark` is that line.
    """

    mark: Mark | None
    path: str

    def child(self, segment: str, mark: Mark | None) -> "Origin":
        return Origin(mark, f"{self.path} › {segment}" if self.path else segment)


@dataclass(eq=False)  # identity: nodes key the inferred shapes and the compiled modules
class Node:
    origin: Origin
    name: str | None = None
    sources: list[str] | None = None  # `from:`; None means "the previous node"
    trainable: bool = True
    from_mark: Mark | None = None  # where `from:` was written, for reference errors
    init: Any = None  # netspec.lang.init.Rule for a layer, or {kind: Rule} for what is inside

    @property
    def kind(self) -> str:
        raise NotImplementedError

    @property
    def arity(self) -> int | None:
        """How many inputs the node takes (None: two or more)."""
        return 1

    @property
    def parts(self) -> int | None:
        """How many outputs `from: NAME.i` reads (a split); None: one output, read by name."""
        return None

    def children(self) -> Sequence["Node"]:
        return ()

    def inferred_children(self, shapes: NodeShapes) -> Sequence["Node"]:
        """The children as shape inference saw them (it may add some, e.g. a projection)."""
        return self.children()

    def infer(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        raise NotImplementedError

    def compile(self, compiler, shapes: NodeShapes, rules: dict):
        raise NotImplementedError


def walk(node: Node) -> Iterator[Node]:
    """`node` and every node under it, depth first, in order."""
    yield node
    for child in node.children():
        yield from walk(child)


@dataclass(eq=False)
class LayerNode(Node):
    """One layer; its class (netspec.layers) holds the shape rule and the builder."""

    layer: Layer | None = None

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def arity(self) -> int | None:
        return self.layer.arity

    @property
    def parts(self) -> int | None:
        return getattr(self.layer, "parts", None)

    def infer(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        return walker.leaf(self, inputs, depth, trainable)

    def compile(self, compiler, shapes: NodeShapes, rules: dict):
        module = self.layer.build(shapes.inputs, shapes.output)
        compiler.initialise(module, self, rules)
        return module


@dataclass(eq=False)
class SeqNode(Node):
    """A list of nodes run in order; a node may read earlier named nodes of the list (`from:`)."""

    label: str = "layers"  # block name, `vgg`, `repeat` ... (used to name the module)
    nodes: list[Node] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.label

    def children(self) -> Sequence[Node]:
        return self.nodes

    def infer(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        """As an item of a list (a block, `repeat`): a row that sums its items."""
        return walker.group(self, inputs, depth, lambda d: self.infer_items(walker, inputs, d, trainable))

    def infer_items(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        """The items' rows, each fed from the previous item or the ones `from:` names; a source is an
        item's index (-1: the list's input), or (index, part) for `from: NAME.part` of a split."""
        outputs: list[Shape] = []
        names: dict[str, int] = {INPUT_NAME: -1}
        for i, child in enumerate(self.nodes):
            sources = [_source(names, s) for s in child.sources] if child.sources else [i - 1]
            child_inputs = [_read(inputs[0], outputs, s) for s in sources]
            outputs.append(walker.node(child, child_inputs, depth, trainable, sources).output)
            if child.name:
                names[child.name] = i
        return NodeShapes(inputs, outputs[-1] if outputs else inputs[0], trainable)

    def compile(self, compiler, shapes: NodeShapes, rules: dict):
        """nn.Sequential when each item reads the previous one, else a torch.fx GraphModule."""
        names = compiler.module_names(self.nodes)
        modules = [compiler.node(child, rules) for child in self.nodes]
        sources = [compiler.shapes[child].sources for child in self.nodes]
        if all(s == [i - 1] for i, s in enumerate(sources)):
            return compiler.chain(names, modules)
        return compiler.graph(self.kind, names, modules, sources)


def _source(names: dict[str, int], reference: str):
    name, part = parse_reference(reference)
    return names[name] if part is None else (names[name], part)


def _read(given: Shape, outputs: list[Shape], source) -> Shape:
    """The shape a source gives: the list's input, an item's output, or one part of a split."""
    if isinstance(source, tuple):
        return outputs[source[0]][1:]  # a split's output stacks its parts along its first axis
    return given if source < 0 else outputs[source]


@dataclass(eq=False)
class ResidualNode(Node):
    """body(x) + shortcut(x); `shortcut: auto` is the identity, or a projection when shapes differ."""

    body: SeqNode | None = None
    shortcut: Union[SeqNode, Literal["auto", "identity"]] = "auto"

    @property
    def kind(self) -> str:
        return "residual"

    def children(self) -> Sequence[Node]:
        return (self.body,) if isinstance(self.shortcut, str) else (self.body, self.shortcut)

    def inferred_children(self, shapes: NodeShapes) -> Sequence[Node]:
        return (self.body,) if shapes.shortcut is None else (self.body, shapes.shortcut)

    def infer(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        return walker.group(self, inputs, depth, lambda d: self.infer_sum(walker, inputs, d, trainable))

    def infer_sum(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        body = walker.part(self.body, inputs, depth, trainable).output
        shortcut = self.shortcut
        if shortcut == "auto" and body != inputs[0]:
            shortcut = self.projection(walker, inputs[0], body)
        result = NodeShapes(inputs, body, trainable, shortcut=None if isinstance(shortcut, str) else shortcut)
        through = walker.part(result.shortcut, inputs, depth, trainable).output if result.shortcut else inputs[0]
        hint = "use `shortcut: auto` to project the input" if self.shortcut == "identity" else None
        walker.require_equal(self, "residual", [body, through],
                             f"body gives {shape_text(body)} but the shortcut gives {shape_text(through)}",
                             "residual body and shortcut differ", hint)
        walker.merge_row(self, depth, "add", "add (body + shortcut)", [body, through], body,
                         f"{shape_text(body)} + {shape_text(through)}")
        return result

    def projection(self, walker, given: Shape, wanted: Shape) -> SeqNode:
        """torchvision's downsample: conv1x1(stride = spatial ratio, bias=False) + BatchNorm."""
        if len(given) != 3 or len(wanted) != 3:
            raise walker.failure(self.origin, "residual", ShapeError(
                f"shortcut: auto projects C×H×W maps, body maps {shape_text(given)} to {shape_text(wanted)}",
                "give an explicit `shortcut:` list"))
        strides = [self.projection_stride(walker, a, b) for a, b in zip(given[1:], wanted[1:])]
        origin = self.origin.child("shortcut (auto)", self.origin.mark)
        conv = REGISTRY["conv"](out=wanted[0], kernel=(1, 1), stride=tuple(strides), bias=False)
        return SeqNode(origin, label="downsample",
                       nodes=[LayerNode(origin, layer=conv), LayerNode(origin, layer=REGISTRY["bn"]())])

    def projection_stride(self, walker, size, out) -> int:
        for stride in range(1, 65):
            if sym.add(sym.floordiv(sym.sub(size, 1), stride), 1) == out:
                return stride
        raise walker.failure(self.origin, "residual", ShapeError(
            f"shortcut: auto finds no 1×1 conv stride that maps size {sym.fmt(size)} to {sym.fmt(out)}",
            "give an explicit `shortcut:` list"))

    def compile(self, compiler, shapes: NodeShapes, rules: dict):
        from torch import nn

        from netspec.compile.modules import Residual

        # the shortcut first: modules draw their initial weights in build order
        shortcut = compiler.node(shapes.shortcut, rules) if shapes.shortcut is not None else nn.Identity()
        return Residual(compiler.node(self.body, rules), shortcut)


@dataclass(eq=False)
class ParallelNode(Node):
    """Every path runs on the same input; the outputs are merged (`concat` or `add`)."""

    paths: list[SeqNode] = field(default_factory=list)
    merge: Literal["concat", "add"] = "concat"

    @property
    def kind(self) -> str:
        return "parallel"

    def children(self) -> Sequence[Node]:
        return self.paths

    def infer(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        return walker.group(self, inputs, depth, lambda d: self.infer_merge(walker, inputs, d, trainable))

    def infer_merge(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        shapes = [walker.part(path, inputs, depth, trainable).output for path in self.paths]
        merge = REGISTRY[self.merge]()
        if self.merge == "add":
            walker.require_equal(self, "parallel (merge: add)", shapes,
                                 "add needs equal shapes, got " + " and ".join(shape_text(s) for s in shapes),
                                 "parallel paths differ")
        info = walker.layer_info(self, f"parallel (merge: {self.merge})", merge, shapes)
        walker.merge_row(self, depth, self.merge, f"{self.merge} (paths)", shapes, info.shape, info.formula)
        return NodeShapes(inputs, info.shape, trainable, merge=merge)

    def compile(self, compiler, shapes: NodeShapes, rules: dict):
        from netspec.compile.modules import Parallel

        merge = shapes.merge.build([compiler.shapes[path].output for path in self.paths], shapes.output)
        return Parallel([compiler.node(path, rules) for path in self.paths], merge)


@dataclass
class Spec:
    """A loaded, validated and expanded spec: the IR's root and what the file says about it."""

    name: str
    input: tuple
    root: SeqNode
    path: Path | None
    text: str
    vars: dict[str, Any]
    train: Any  # the `train:` section (netspec.train.config.TrainConfig), or None
    labels: list[str] | None
    input_mark: Mark | None = None
    symbols: list[str] = field(default_factory=list)
    init: dict = field(default_factory=dict)  # layer type → netspec.lang.init.Rule
    # what `include:` read: (including file, name) → (resolved file, text); see netspec.reading.IncludeSources
    included: dict = field(default_factory=dict, repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(eq=False)
class AuxNode(Node):
    """An auxiliary head (`aux`, GoogLeNet / Inception v3): passes its input through unchanged.
    In training its head runs on that input and its class scores are collected for the loss
    (weight · CE, netspec.train.loop); in eval (and so in any export) the head does not run.
    Its params count in the totals; its MACs are training-only, so they are left out of the
    MAC total (torchvision's `_ops` are eval-mode MACs) and written in the aux row's formula."""

    head: SeqNode | None = None
    weight: float = 1.0

    @property
    def kind(self) -> str:
        return "aux"

    def children(self) -> Sequence[Node]:
        return (self.head,)

    def infer(self, walker, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        at = len(walker.rows)
        found = {}
        shapes = walker.group(self, inputs, depth, lambda d: self.infer_head(walker, inputs, d, trainable, found))
        row = walker.rows[at]
        row.label = f"aux (weight {self.weight:g}, training only)"
        row.formula = (f"head → {shape_text(found['output'])}; {row.formula}; {sym.fmt(found['macs'])} MACs in "
                       "training only, not in the MAC total")
        _check_heads_at_end(walker, self, found["output"])
        return shapes

    def infer_head(self, walker, inputs: list[Shape], depth: int, trainable: bool, found: dict) -> NodeShapes:
        at = len(walker.rows)
        found["output"] = walker.part(self.head, inputs, depth, trainable).output
        found["macs"] = 0
        for row in walker.rows[at:]:  # training-only MACs: out of the running totals (eval-mode MACs)
            if row.leaf and row.macs != 0:
                found["macs"] = sym.add(found["macs"], row.macs)
                walker.running["macs"] = sym.sub(walker.running["macs"], row.macs)
                row.formula = f"{row.formula} [aux: {sym.fmt(row.macs)} MACs, training only]"
                row.macs = 0
        return NodeShapes(inputs, inputs[0], trainable)

    def compile(self, compiler, shapes: NodeShapes, rules: dict):
        from netspec.compile.aux_modules import AuxHead

        return AuxHead(compiler.node(self.head, rules), self.weight)


def _check_heads_at_end(walker, node: AuxNode, head: Shape) -> None:
    """An aux head must give class scores shaped like the main output, which is known only when the
    walk ends: the check runs then (`Walker.at_end`), as a located error."""
    def check(main: Shape) -> None:
        problem = (f"the aux head gives {shape_text(head)} but the main output is {shape_text(main)}",
                   "end the head in the class scores (`linear: $classes`)")
        walker.ctx.origin = node.origin
        try:
            for a, b in zip(head, main):
                walker.ctx.equal(a, b, *problem)
            if len(head) != len(main):
                raise ShapeError(*problem)
        except ShapeError as e:
            raise walker.failure(node.origin, "aux", e) from None

    walker.at_end.append(check)
