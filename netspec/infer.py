"""Static shape inference: walk the node tree, run each layer's shape rule, keep a row each.

Shape rules raise plain `ShapeError`s; this walker is the one place that attaches the
location (`file:line:col` and the expansion path), as ONNX shape inference does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netspec import symbolic as sym
from netspec.constraints import summarize
from netspec.errors import Diagnostic, ShapeError, SpecError
from netspec.graph import LayerNode, Node, Origin, ParallelNode, ResidualNode, SeqNode
from netspec.layers import REGISTRY
from netspec.layers.base import InferContext, LayerInfo, Shape, shape_text
from netspec.report import Report, Row
from netspec.spec import INPUT_NAME, Spec

# Any number in a layer's output shape (a size, or a coefficient or divisor of a symbolic one)
# must stay within 2^62, the bound on integer literals and `${}` results: real tensors are far
# smaller, and it keeps every later product (params, MACs) a small, fast integer — 10,000
# `upsample`-like doublings or 100 stride-2^31 pools stop here instead of building huge numbers.
MAX_SIZE = 1 << 62
_TOTALS = ("params", "trainable_params", "buffers", "macs")


@dataclass
class Inferred:
    """A node with its shapes resolved; the compiler builds modules from this tree."""

    node: Node
    inputs: list[Shape]
    output: Shape
    trainable: bool
    children: list["Inferred"] = field(default_factory=list)  # seq items / residual body / parallel paths
    sources: list[int] = field(default_factory=list)  # in a seq: earlier item indices, -1 = the seq input
    shortcut: "Inferred | None" = None  # residual: None means identity
    merge: Any = None  # parallel: the merge Layer instance
    module: Any = None  # set by netspec.compiler: the torch module built for this node

    def walk(self):
        """This node and every node under it (children, then the shortcut), depth first."""
        yield self
        for child in self.children:
            yield from child.walk()
        if self.shortcut is not None:
            yield from self.shortcut.walk()


def check(spec: Spec) -> Report:
    """Infer every node's shape, params and MACs without torch; raise SpecError on the first failure."""
    return Walker(spec).run()


class Walker:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.rows: list[Row] = []
        self.ctx = InferContext()
        # running sums over leaf rows: a container's totals are the difference across its children
        self.running: dict[str, Any] = dict.fromkeys(_TOTALS, 0)
        self.leaf_count = 0
        self.labels: dict[int, str] = {}  # id(layer) → label; layers written bare are shared

    def run(self) -> Report:
        tree = self.seq(self.spec.root, [self.spec.input], depth=0, trainable=True)
        report = self.report(tree.output)
        report.tree = tree
        try:
            report.constraints = summarize(self.ctx.constraints, self.spec.symbols, self.rows)
        except ShapeError as e:
            origin = getattr(e, "origin", None)
            raise self.failure(origin, "", e) from None
        return report

    def report(self, output: Shape | None) -> Report:
        return Report(self.spec.name, self.spec.input, self.rows, output, symbols=list(self.spec.symbols))

    def failure(self, origin: Origin | None, kind: str, error: ShapeError) -> SpecError:
        where = f"{origin.path} {kind}".strip() if origin else kind
        diagnostic = Diagnostic(origin.mark if origin else None, where, str(error), error.hint)
        return SpecError([diagnostic], partial_report=self.report(None))

    # -- nodes ------------------------------------------------------------------------------------
    def node(self, node: Node, inputs: list[Shape], depth: int, trainable: bool) -> Inferred:
        trainable = trainable and node.trainable
        if isinstance(node, LayerNode):
            return self.leaf(node, inputs, depth, trainable)
        if isinstance(node, SeqNode):
            return self.group(node, inputs, depth, trainable, lambda d: self.seq(node, inputs, d, trainable))
        if isinstance(node, ResidualNode):
            return self.group(node, inputs, depth, trainable, lambda d: self.residual(node, inputs, d, trainable))
        if isinstance(node, ParallelNode):
            return self.group(node, inputs, depth, trainable, lambda d: self.parallel(node, inputs, d, trainable))
        raise TypeError(f"unknown node {node!r}")

    def leaf(self, node: LayerNode, inputs: list[Shape], depth: int, trainable: bool) -> Inferred:
        self.ctx.origin = node.origin
        try:
            info: LayerInfo = node.layer.infer(inputs, self.ctx)
            check_size(info.shape)
        except ShapeError as e:
            raise self.failure(node.origin, node.kind, e) from None
        row = Row(len(self.rows), depth, node.kind, self.label(node.layer), node.origin, inputs,
                  info.shape, info.formula, info.params, info.params if trainable else 0, info.buffers, info.macs)
        self.add_row(row)
        return Inferred(node, inputs, info.shape, trainable)

    def add_row(self, row: Row) -> None:
        """Append a row; a leaf also adds to the running totals its containers are read from."""
        self.rows.append(row)
        if not row.leaf:
            return
        self.leaf_count += 1
        for attr in _TOTALS:
            value = getattr(row, attr)
            if value != 0:
                self.running[attr] = sym.add(self.running[attr], value)

    def label(self, layer) -> str:
        label = self.labels.get(id(layer))
        if label is None:
            label = self.labels[id(layer)] = layer.label()
        return label

    def group(self, node: Node, inputs: list[Shape], depth: int, trainable: bool, body) -> Inferred:
        """A container row (block, residual, parallel) whose totals sum its children."""
        row = Row(len(self.rows), depth, node.kind, node.kind, node.origin, inputs, leaf=False)
        self.rows.append(row)
        before, leaves_before = dict(self.running), self.leaf_count
        inferred = body(depth + 1)
        row.output = inferred.output
        for attr in _TOTALS:
            setattr(row, attr, sym.sub(self.running[attr], before[attr]))
        children = self.leaf_count - leaves_before
        row.formula = f"{children} layer{'s' if children != 1 else ''}"
        return inferred

    def seq(self, seq: SeqNode, inputs: list[Shape], depth: int, trainable: bool) -> Inferred:
        outputs: list[Shape] = []
        names: dict[str, int] = {INPUT_NAME: -1}
        result = Inferred(seq, inputs, inputs[0], trainable)
        for i, child in enumerate(seq.nodes):
            sources = [names[s] for s in child.sources] if child.sources else [i - 1]
            child_inputs = [inputs[0] if s < 0 else outputs[s] for s in sources]
            inferred = self.node(child, child_inputs, depth, trainable)
            inferred.sources = sources
            result.children.append(inferred)
            outputs.append(inferred.output)
            if child.name:
                names[child.name] = i
        if outputs:
            result.output = outputs[-1]
        return result

    def residual(self, node: ResidualNode, inputs: list[Shape], depth: int, trainable: bool) -> Inferred:
        body = self.seq(node.body, inputs, depth, trainable)
        result = Inferred(node, inputs, body.output, trainable, children=[body])
        shortcut = node.shortcut
        if shortcut == "auto" and body.output != inputs[0]:
            shortcut = self.projection(node, inputs[0], body.output)
        if isinstance(shortcut, SeqNode):
            result.shortcut = self.seq(shortcut, inputs, depth, trainable)
        shortcut_shape = result.shortcut.output if result.shortcut else inputs[0]
        hint = "use `shortcut: auto` to project the input" if node.shortcut == "identity" else None
        self.require_equal(node, "residual", [body.output, shortcut_shape],
                           f"body gives {shape_text(body.output)} but the shortcut gives {shape_text(shortcut_shape)}",
                           "residual body and shortcut differ", hint)
        self.add_row(Row(len(self.rows), depth, "add", "add (body + shortcut)", node.origin,
                             [body.output, shortcut_shape], body.output,
                             f"{shape_text(body.output)} + {shape_text(shortcut_shape)}"))
        return result

    def require_equal(self, node: Node, kind: str, shapes: list[Shape], message: str, differ: str,
                      hint: str | None = None) -> None:
        """Residual and parallel `add` need exactly equal shapes (no broadcasting): an error for
        concrete sizes, a condition on symbolic ones."""
        self.ctx.origin = node.origin
        if any(s != shapes[0] for s in shapes) and all(isinstance(d, int) for s in shapes for d in s):
            raise self.failure(node.origin, kind, ShapeError(message, hint))
        for other in shapes[1:]:
            for axis, (a, b) in enumerate(zip(shapes[0], other)):
                self.ctx.equal(a, b, f"{differ} along axis {axis}")

    def projection(self, node: ResidualNode, given: Shape, wanted: Shape) -> SeqNode:
        """torchvision's downsample: conv1x1(stride = spatial ratio, bias=False) + BatchNorm."""
        if len(given) != 3 or len(wanted) != 3:
            raise self.failure(node.origin, "residual", ShapeError(
                f"shortcut: auto projects C×H×W maps, body maps {shape_text(given)} to {shape_text(wanted)}",
                "give an explicit `shortcut:` list"))
        strides = [self.projection_stride(node, a, b) for a, b in zip(given[1:], wanted[1:])]
        origin = node.origin.child("shortcut (auto)", node.origin.mark)
        conv = REGISTRY["conv"](out=wanted[0], kernel=(1, 1), stride=tuple(strides), bias=False)
        return SeqNode(origin, label="downsample",
                       nodes=[LayerNode(origin, layer=conv), LayerNode(origin, layer=REGISTRY["bn"]())])

    def projection_stride(self, node: ResidualNode, size, out) -> int:
        for stride in range(1, 65):
            if sym.add(sym.floordiv(sym.sub(size, 1), stride), 1) == out:
                return stride
        raise self.failure(node.origin, "residual", ShapeError(
            f"shortcut: auto finds no 1×1 conv stride that maps size {sym.fmt(size)} to {sym.fmt(out)}",
            "give an explicit `shortcut:` list"))

    def parallel(self, node: ParallelNode, inputs: list[Shape], depth: int, trainable: bool) -> Inferred:
        paths = [self.seq(p, inputs, depth, trainable) for p in node.paths]
        merge = REGISTRY[node.merge]()
        self.ctx.origin = node.origin
        shapes = [p.output for p in paths]
        if node.merge == "add":
            self.require_equal(node, "parallel (merge: add)", shapes,
                               "add needs equal shapes, got " + " and ".join(shape_text(s) for s in shapes),
                               "parallel paths differ")
        try:
            info = merge.infer([p.output for p in paths], self.ctx)
            check_size(info.shape)
        except ShapeError as e:
            raise self.failure(node.origin, f"parallel (merge: {node.merge})", e) from None
        self.add_row(Row(len(self.rows), depth, node.merge, f"{node.merge} (paths)", node.origin,
                             [p.output for p in paths], info.shape, info.formula))
        return Inferred(node, inputs, info.shape, trainable, children=paths, merge=merge)


def check_size(shape: Shape) -> None:
    """A ShapeError when a number in `shape` passes MAX_SIZE (before it feeds any later layer)."""
    for d in shape:
        within = -MAX_SIZE <= d <= MAX_SIZE if type(d) is int else sym.magnitude(d) <= MAX_SIZE
        if not within:
            # inputs were within the limit, so this number has at most ~40 digits: safe to print
            raise ShapeError(f"output size {sym.fmt(d)} is too large: the numbers in a size must stay "
                             f"within {MAX_SIZE:,}", "check the strides and channel counts before this layer")
