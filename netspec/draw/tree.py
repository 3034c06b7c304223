"""The picture's tree: the IR as shape inference saw it, each node paired with its table row.

Inference writes rows in the order it visits nodes (`Report.walk`): a container's row first, then its
children's, then a residual's or a parallel's merge row; a list inside a container (a body, a path,
a head) and the root have no row of their own. `build` walks the IR in that same order and takes
the rows as it goes, checking each pairing by the row's origin, so a drawing never shows one node's
numbers on another's box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.lang.ir import AuxNode, LayerNode, Node, ParallelNode, ResidualNode, SeqNode
from netspec.shapes.report import Report, Row

LEAF, BLOCK, RESIDUAL, PARALLEL, AUX = "leaf", "block", "residual", "parallel", "aux"
IDENTITY = "identity"  # a residual column that is the input itself


@dataclass
class Item:
    """One box (a layer) or group (a block, macro, residual, parallel or aux head) of the picture."""

    layout: str  # LEAF, BLOCK, RESIDUAL, PARALLEL or AUX
    row: Row
    name: str | None
    sources: list = field(default_factory=list)  # as NodeShapes.sources: earlier items of its list, -1 = input
    columns: list = field(default_factory=list)  # lists of Items side by side (one for a block), or IDENTITY
    merge: Row | None = None  # a residual's add, a parallel's concat/add

    @property
    def group(self) -> bool:
        return self.layout != LEAF


class Pairing:
    """The rows, taken in order."""

    def __init__(self, report: Report):
        self.report, self.rows, self.at = report, report.rows, 0

    def take(self, node: Node, leaf: bool) -> Row:
        row = self.rows[self.at] if self.at < len(self.rows) else None
        if row is None or row.origin is not node.origin or row.leaf != leaf:
            raise AssertionError(f"draw: row {self.at} does not belong to the {node.kind} node at {node.origin.path}")
        self.at += 1
        return row

    def merge_follows(self, node: Node) -> bool:
        row = self.rows[self.at] if self.at < len(self.rows) else None
        return row is not None and row.leaf and row.origin is node.origin


def build(report: Report) -> list[Item]:
    """The root list's items; every row of the report is paired with exactly one node."""
    pairing = Pairing(report)
    items = items_of(pairing, report.root)
    if pairing.at != len(report.rows):
        raise AssertionError(f"draw: {len(report.rows) - pairing.at} rows were not paired with a node")
    return items


def items_of(pairing: Pairing, seq: SeqNode) -> list[Item]:
    return [item_of(pairing, child) for child in seq.nodes]


def item_of(pairing: Pairing, node: Node) -> Item:
    shapes = pairing.report.shapes[node]
    sources = list(shapes.sources)
    if isinstance(node, LayerNode):
        return Item(LEAF, pairing.take(node, True), node.name, sources)
    row = pairing.take(node, False)
    if isinstance(node, SeqNode):
        return Item(BLOCK, row, node.name, sources, [items_of(pairing, node)])
    columns = [items_of(pairing, part) for part in node.inferred_children(shapes)]
    if isinstance(node, ResidualNode):
        layout = RESIDUAL
        if shapes.shortcut is None:
            columns.append(IDENTITY)
    elif isinstance(node, ParallelNode):
        layout = PARALLEL
    elif isinstance(node, AuxNode):
        layout = AUX
        columns.insert(0, IDENTITY)  # the input passes through; the head runs beside it in training
    else:
        raise AssertionError(f"draw: no layout for the {node.kind} node")
    merge = pairing.take(node, True) if pairing.merge_follows(node) else None
    return Item(layout, row, node.name, sources, columns, merge)


def walk(items: list[Item]):
    """Every item, depth first."""
    for item in items:
        yield item
        for column in item.columns:
            if column != IDENTITY:
                yield from walk(column)
