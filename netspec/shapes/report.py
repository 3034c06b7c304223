"""The result of static inference: each IR node's shapes, one row per node plus totals, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netspec.lang.ir import Origin
from netspec.layers.base import Shape, shape_text
from netspec.shapes import symbolic as sym
from netspec.shapes.symbolic import Dim

BYTES_PER_ELEMENT = 4  # float32


@dataclass
class Row:
    index: int
    depth: int
    kind: str
    label: str
    origin: Origin
    inputs: list[Shape]
    output: Shape | None = None
    formula: str = ""
    params: Dim = 0
    trainable_params: Dim = 0
    buffers: Dim = 0
    macs: Dim = 0
    leaf: bool = True

    @property
    def line(self) -> int | None:
        return self.origin.mark.line if self.origin.mark else None


@dataclass
class Report:
    name: str
    input: Shape
    rows: list[Row]
    output: Shape | None = None
    constraints: list[str] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    root: Any = None  # the IR root (netspec.lang.ir.SeqNode) the report is about
    shapes: dict = field(default_factory=dict)  # IR node → its NodeShapes; what netspec.build compiles from

    _totals: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _leaf_total(self, attr: str) -> Dim:
        # the table's footer reads each total several times; summing 90,000 rows once is enough
        key = (attr, len(self.rows))
        if key not in self._totals:
            self._totals[key] = sym.total(getattr(r, attr) for r in self.rows if r.leaf)
        return self._totals[key]

    @property
    def params(self) -> Dim:
        return self._leaf_total("params")

    @property
    def trainable_params(self) -> Dim:
        return self._leaf_total("trainable_params")

    @property
    def non_trainable_params(self) -> Dim:
        return sym.sub(self.params, self.trainable_params)

    @property
    def buffers(self) -> Dim:
        return self._leaf_total("buffers")

    @property
    def macs(self) -> Dim:
        return self._leaf_total("macs")

    @property
    def flops(self) -> Dim:
        """FLOPs counted as 2 × MACs (one multiply and one add each)."""
        return sym.scale(self.macs, 2)

    @property
    def param_bytes(self) -> Dim:
        return sym.scale(self.params, BYTES_PER_ELEMENT)

    @property
    def activation_bytes(self) -> Dim:
        """float32 bytes of every layer's output for one sample (what a forward pass keeps for backward)."""
        key = ("activations", len(self.rows))
        if key not in self._totals:
            elements = sym.total(sym.product(r.output) for r in self.rows if r.leaf and r.output)
            self._totals[key] = sym.scale(elements, BYTES_PER_ELEMENT)
        return self._totals[key]

    def walk(self, node: Any = None):
        """Every inferred node, depth first from the root: the IR's nodes and those inference
        added (a `shortcut: auto` projection), in the order inference visited them."""
        node = self.root if node is None else node
        yield node
        for child in node.inferred_children(self.shapes[node]):
            yield from self.walk(child)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "input": _dims(self.input),
            "output": _dims(self.output) if self.output is not None else None,
            "params": _num(self.params),
            "trainable_params": _num(self.trainable_params),
            "non_trainable_params": _num(self.non_trainable_params),
            "buffers": _num(self.buffers),
            "macs": _num(self.macs),
            "flops": _num(self.flops),
            "param_bytes": _num(self.param_bytes),
            "activation_bytes": _num(self.activation_bytes),
            "symbols": self.symbols,
            "constraints": self.constraints,
            "layers": [_row_json(r) for r in self.rows],
        }


def _num(value: Dim) -> int | str:
    return value if isinstance(value, int) else sym.fmt(value)


def _dims(shape: Shape) -> list:
    return [_num(d) for d in shape]


def _row_json(row: Row) -> dict:
    mark = row.origin.mark
    return {
        "index": row.index,
        "depth": row.depth,
        "type": row.kind,
        "label": row.label,
        "path": row.origin.path,
        "leaf": row.leaf,
        "output": _dims(row.output) if row.output is not None else None,
        "output_text": shape_text(row.output) if row.output is not None else None,
        "params": _num(row.params),
        "trainable_params": _num(row.trainable_params),
        "buffers": _num(row.buffers),
        "macs": _num(row.macs),
        "formula": row.formula,
        "file": mark.file if mark else None,
        "line": mark.line if mark else None,
        "col": mark.col if mark else None,
    }
