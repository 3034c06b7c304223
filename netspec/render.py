"""Printing a Report as a rich table with totals (the `netspec check` output)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netspec import symbolic as sym
from netspec.layers.base import shape_text
from netspec.report import Report
from netspec.symbolic import Dim


def human(value: Dim, unit: str = "") -> str:
    """`4,089,184,256 (4.09 G)`; symbolic values print as their formula."""
    if not isinstance(value, int):
        return sym.fmt(value)
    for scale, suffix in ((10**12, " T"), (10**9, " G"), (10**6, " M"), (10**3, " K")):
        if abs(value) >= scale:
            return f"{value:,} ({value / scale:.3g}{suffix}{unit})"
    return f"{value:,}"


def human_bytes(value: Dim) -> str:
    if not isinstance(value, int):
        return f"{sym.fmt(value)} bytes"
    for scale, suffix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= scale:
            return f"{value / scale:.2f} {suffix}"
    return f"{value} B"


def _count(value: Dim) -> str:
    return f"{value:,}" if isinstance(value, int) else sym.fmt(value)


def table(report: Report, title: str | None = None) -> Table:
    grid = Table(title=title, show_lines=False, header_style="bold", expand=False)
    grid.add_column("#", justify="right", no_wrap=True)
    grid.add_column("layer", no_wrap=True)
    grid.add_column("line", justify="right", no_wrap=True)
    grid.add_column("output", no_wrap=True)
    grid.add_column("formula", min_width=30)
    symbolic = bool(report.symbols)
    grid.add_column("params", justify="right", no_wrap=not symbolic, max_width=32 if symbolic else None)
    grid.add_column("MACs", justify="right", no_wrap=not symbolic, max_width=32 if symbolic else None)
    for row in report.rows:
        label = "  " * row.depth + row.label
        style = None if row.leaf else "dim"
        output = shape_text(row.output) if row.output is not None else "?"
        grid.add_row(str(row.index), escape(label), str(row.line or ""), escape(output), escape(row.formula),
                     _count(row.params), _count(row.macs), style=style)
    return grid


def totals(report: Report) -> list[str]:
    lines = [
        f"input {shape_text(report.input)} → output {shape_text(report.output) if report.output else '?'}",
        f"params: {human(report.params)}  (trainable {_count(report.trainable_params)}, "
        f"non-trainable {_count(report.non_trainable_params)})",
        f"buffers: {_count(report.buffers)}",
        f"MACs: {human(report.macs)}   FLOPs (= 2×MACs): {human(report.flops)}",
        f"parameter memory (float32): {human_bytes(report.param_bytes)}",
        f"activation memory (batch 1, float32, every layer's output): {human_bytes(report.activation_bytes)}",
    ]
    if report.constraints:
        lines.append(f"input sizes {', '.join(report.symbols)} must satisfy:")
        lines += [f"  - {c}" for c in report.constraints]
    return lines


def print_report(report: Report, console: Console, title: str | None = None) -> None:
    console.print(table(report, title=title or report.name))
    for line in totals(report):
        console.print(escape(line), highlight=False)
