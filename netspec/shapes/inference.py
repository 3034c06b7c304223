"""Static shape inference: walk the IR, run each node's shape step, keep a row each.

Every node kind's own `infer` (netspec.lang.ir) does its step through this walker, which
records the rows and each node's `NodeShapes` (`Report.shapes`, keyed by node). Shape rules
raise plain `ShapeError`s; the walker is the one place that attaches the location
(`file:line:col` and the expansion path), as ONNX shape inference does.
"""

from __future__ import annotations

from typing import Any

from netspec.errors import Diagnostic, ShapeError, SpecError
from netspec.lang.ir import LayerNode, Node, Origin, SeqNode, Spec
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape
from netspec.shapes import symbolic as sym
from netspec.shapes.constraints import summarize
from netspec.shapes.node_shapes import NodeShapes
from netspec.shapes.report import Report, Row

# Any number in a layer's output shape (a size, or a coefficient or divisor of a symbolic one)
# must stay within 2^62, the bound on integer literals and `${}` results: real tensors are far
# smaller, and it keeps every later product (params, MACs) a small, fast integer — 10,000
# `upsample`-like doublings or 100 stride-2^31 pools stop here instead of building huge numbers.
MAX_SIZE = 1 << 62
_TOTALS = ("params", "trainable_params", "buffers", "macs")


def check(spec: Spec) -> Report:
    """Infer every node's shape, params and MACs without torch; raise SpecError on the first failure."""
    return Walker(spec).run()


class Walker:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.rows: list[Row] = []
        self.shapes: dict[Node, NodeShapes] = {}
        self.ctx = InferContext()
        # running sums over leaf rows: a container's totals are the difference across its children
        self.running: dict[str, Any] = dict.fromkeys(_TOTALS, 0)
        self.leaf_count = 0
        self.labels: dict[int, str] = {}  # id(layer) → label; layers written bare are shared
        # checks that need the main output, known only when the walk ends (an aux head's width)
        self.at_end: list = []  # callables taking the output shape

    def run(self) -> Report:
        output = self.part(self.spec.root, [self.spec.input], depth=0, trainable=True).output
        for check_output in self.at_end:
            check_output(output)
        report = self.report(output)
        try:
            report.constraints = summarize(self.ctx.constraints, self.spec.symbols, self.rows)
        except ShapeError as e:
            origin = getattr(e, "origin", None)
            raise self.failure(origin, "", e) from None
        return report

    def report(self, output: Shape | None) -> Report:
        return Report(self.spec.name, self.spec.input, self.rows, output, symbols=list(self.spec.symbols),
                      root=self.spec.root, shapes=self.shapes)

    def failure(self, origin: Origin | None, kind: str, error: ShapeError) -> SpecError:
        where = f"{origin.path} {kind}".strip() if origin else kind
        diagnostic = Diagnostic(origin.mark if origin else None, where, str(error), error.hint)
        return SpecError([diagnostic], partial_report=self.report(None))

    # -- what node kinds call (netspec.lang.ir) ----------------------------------------------------
    def node(self, node: Node, inputs: list[Shape], depth: int, trainable: bool, sources: list[int]) -> NodeShapes:
        """An item of a list, read from the items at `sources` (-1: the list's input)."""
        shapes = node.infer(self, inputs, depth, trainable and node.trainable)
        shapes.sources = sources
        self.shapes[node] = shapes
        return shapes

    def part(self, seq: SeqNode, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        """A list inside a container (a body, a path) or the root: its items' rows, none of its own."""
        shapes = seq.infer_items(self, inputs, depth, trainable and seq.trainable)
        self.shapes[seq] = shapes
        return shapes

    def leaf(self, node: LayerNode, inputs: list[Shape], depth: int, trainable: bool) -> NodeShapes:
        info = self.layer_info(node, node.kind, node.layer, inputs)
        row = Row(len(self.rows), depth, node.kind, self.label(node.layer), node.origin, inputs,
                  info.shape, info.formula, info.params, info.params if trainable else 0, info.buffers, info.macs)
        self.add_row(row)
        return NodeShapes(inputs, info.shape, trainable)

    def layer_info(self, node: Node, kind: str, layer: Layer, inputs: list[Shape]) -> LayerInfo:
        """`layer`'s shape rule on `inputs`, failing at `node`'s origin."""
        self.ctx.origin = node.origin
        try:
            info: LayerInfo = layer.infer(inputs, self.ctx)
            check_size(info.shape)
        except ShapeError as e:
            raise self.failure(node.origin, kind, e) from None
        return info

    def merge_row(self, node: Node, depth: int, kind: str, label: str, inputs: list[Shape], output: Shape,
                  formula: str) -> None:
        """The row of a container's own combining step (a residual's add, a parallel's merge)."""
        self.add_row(Row(len(self.rows), depth, kind, label, node.origin, inputs, output, formula))

    def group(self, node: Node, inputs: list[Shape], depth: int, step) -> NodeShapes:
        """A container row (block, residual, parallel) whose totals sum its children; `step(depth)`
        infers what is inside, one level deeper."""
        row = Row(len(self.rows), depth, node.kind, node.kind, node.origin, inputs, leaf=False)
        self.rows.append(row)
        before, leaves_before = dict(self.running), self.leaf_count
        shapes = step(depth + 1)
        row.output = shapes.output
        for attr in _TOTALS:
            setattr(row, attr, sym.sub(self.running[attr], before[attr]))
        children = self.leaf_count - leaves_before
        row.formula = f"{children} layer{'s' if children != 1 else ''}"
        return shapes

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

    # -- bookkeeping -------------------------------------------------------------------------------
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


def check_size(shape: Shape) -> None:
    """A ShapeError when a number in `shape` passes MAX_SIZE (before it feeds any later layer)."""
    for d in shape:
        within = -MAX_SIZE <= d <= MAX_SIZE if type(d) is int else sym.magnitude(d) <= MAX_SIZE
        if not within:
            # inputs were within the limit, so this number has at most ~40 digits: safe to print
            raise ShapeError(f"output size {sym.fmt(d)} is too large: the numbers in a size must stay "
                             f"within {MAX_SIZE:,}", "check the strides and channel counts before this layer")
