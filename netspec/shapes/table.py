"""The structure `netspec check` draws its table with: which rows each row reads and where it sits.

Inference (netspec.shapes.inference) writes the rows in the order it visits the IR: a container's
row, then what is inside it, then its merge row (a residual's or a parallel's). `layout` walks the
IR again in that order and pairs every row with its node (checking that the row's origin is the
node's), so that each row knows the rows it reads (`from:`, a bypass, a merge's paths) and its
tree prefix: `├ ` starts a path of a residual, parallel or aux head, `│ ` continues one, `└ ` is
the merge. Rows it cannot pair (a partial report, a node kind it does not know) keep plain
indentation and no sources: the table stays true, only less detailed.
"""

from __future__ import annotations

from dataclasses import dataclass

from netspec.lang.ir import AuxNode, LayerNode, ParallelNode, ResidualNode, SeqNode

INPUT = (-1, None)  # the spec's input, as a source


@dataclass
class Layout:
    prefix: list[str]  # the layer column's indentation and tree glyphs, per row
    reads: list[list[tuple[int, int | None]] | None]  # per row: (row, split part) it reads; -1 = input
    parent: list[int]  # the container row around each row (-1 at the top)
    end: list[int]  # the last row inside each row (itself for a leaf)


class _Unpaired(Exception):
    pass


class _Walk:
    def __init__(self, report):
        self.rows, self.shapes = report.rows, report.shapes
        n = len(self.rows)
        self.layout = Layout(["  " * r.depth for r in self.rows], [None] * n, [-1] * n, list(range(n)))
        self.pos = 0

    def take(self, node, reads, parent: int, prefix: str) -> int:
        if self.pos >= len(self.rows) or self.rows[self.pos].origin is not node.origin:
            raise _Unpaired
        at, self.pos = self.pos, self.pos + 1
        self.layout.reads[at], self.layout.parent[at], self.layout.prefix[at] = reads, parent, prefix
        return at

    def items(self, seq: SeqNode, given, parent: int, prefix: str, cont: str):
        """A list's rows; the first item's row gets `prefix`, the rest `cont`. Returns its output."""
        outputs: list = []
        for i, child in enumerate(seq.nodes):
            shapes = self.shapes.get(child)  # None: the node a partial report failed in (its rows end it)
            if shapes is None and child.sources:
                raise _Unpaired
            sources = (shapes.sources if shapes is not None else None) or [i - 1]
            reads = [_source(given, outputs, s) for s in sources]
            outputs.append(self.item(child, reads, parent, prefix if i == 0 else cont, cont))
        return outputs[-1] if outputs else given

    def item(self, node, reads, parent: int, prefix: str, cont: str):
        at = self.take(node, reads, parent, prefix)
        if not isinstance(node, LayerNode):
            self.inside(node, reads[0], at, cont + "  ")
            self.layout.end[at] = self.pos - 1
        return (at, None)

    def inside(self, node, given, at: int, indent: str) -> None:
        if isinstance(node, SeqNode):
            self.items(node, given, at, indent, indent)
            return
        start, mid = indent[:-2] + "├ ", indent[:-2] + "│ "
        if isinstance(node, ResidualNode):
            body = self.items(node.body, given, at, start, mid)
            shortcut = self.shapes[node].shortcut  # KeyError in a partial report: the rows end here
            through = self.items(shortcut, given, at, start, mid) if shortcut is not None else given
            self.take(node, [body, through], at, indent[:-2] + "└ ")
        elif isinstance(node, ParallelNode):
            outputs = [self.items(path, given, at, start, mid) for path in node.paths]
            self.take(node, outputs, at, indent[:-2] + "└ ")
        elif isinstance(node, AuxNode):
            self.items(node.head, given, at, start, mid)
        else:
            raise _Unpaired


def _source(given, outputs: list, source):
    if isinstance(source, tuple):
        return (outputs[source[0]][0], source[1])
    return given if source < 0 else outputs[source]


def layout(report) -> Layout:
    walk = _Walk(report)
    if report.root is not None and isinstance(report.root, SeqNode):
        try:
            walk.items(report.root, INPUT, -1, "", "")
        except (_Unpaired, KeyError, IndexError, RecursionError):
            pass  # rows from here on keep plain indentation
    return walk.layout


def visible_rows(report, depth: int | None) -> list[int]:
    """The rows shown: all, or those at most `depth` containers deep."""
    if depth is None:
        return list(range(len(report.rows)))
    return [i for i, r in enumerate(report.rows) if r.depth <= depth]


def from_texts(report, lay: Layout, shown: list[int]) -> list[str]:
    """The `from` cell of each shown row: the rows it reads, unless that is the row just above it
    (or, for the first row inside a container, the container's own input)."""
    n = len(report.rows)
    is_shown = [False] * n
    for i in shown:
        is_shown[i] = True
    last_shown_upto = [-1] * n  # the last shown row at or before each row
    last = -1
    for i in range(n):
        if is_shown[i]:
            last = i
        last_shown_upto[i] = last

    def visible(row: int) -> int:
        while row >= 0 and not is_shown[row]:
            row = lay.parent[row]
        return row

    texts, previous = [], -1
    for i in shown:
        reads = lay.reads[i]
        texts.append("" if reads is None or _implicit(lay, i, previous, reads, visible, last_shown_upto)
                     else ",".join(_name(visible(r), part) for r, part in reads))
        previous = i
    return texts


def _implicit(lay: Layout, i: int, previous: int, reads, visible, last_shown_upto) -> bool:
    if len(reads) != 1:
        return False
    row, part = reads[0]
    if part is not None:
        return False
    if previous == lay.parent[i] and previous >= 0:  # the first row inside a container
        return lay.reads[previous] == reads
    if row < 0:
        return previous < 0
    return last_shown_upto[lay.end[visible(row)]] == previous


def _name(row: int, part: int | None) -> str:
    text = "input" if row < 0 else str(row)
    return text if part is None else f"{text}.{part}"
