"""Printing a Report as a text table with totals (the `netspec check` output)."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

from netspec.errors import printable
from netspec.layers.base import shape_text
from netspec.shapes import symbolic as sym
from netspec.shapes.report import Report
from netspec.shapes.symbolic import Dim
from netspec.shapes.table import from_texts, layout, visible_rows


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


def count_text(value: Dim) -> str:
    """`61,706`, or the formula of a symbolic count."""
    return f"{value:,}" if isinstance(value, int) else sym.fmt(value)


COLUMNS = ("#", "layer", "from", "line", "output", "formula", "params", "MACs")
RIGHT_ALIGNED = {"#", "line", "params", "MACs"}
MIN_FORMULA = 24  # narrower than this, the formula column is left out rather than wrapped
MIN_LABEL = 16  # layer labels are cut (…) down to this many characters to fit the width


def table_rows(report: Report, depth: int | None = None) -> list[tuple[str, ...]]:
    lay = layout(report)
    shown = visible_rows(report, depth)
    sources = from_texts(report, lay, shown)
    rows = []
    shapes: dict = {}  # consecutive layers mostly share a shape: format each once
    for i, source in zip(shown, sources):
        row = report.rows[i]
        output = row.output
        if output is None:
            text = "?"
        else:
            text = shapes.get(output)
            if text is None:
                text = shapes[output] = shape_text(output)
        label = printable(row.label)
        if depth is not None and row.depth == depth and not row.leaf and lay.end[i] > i:
            label += " ▸"
        # only the label and formula echo spec text (numbers and symbol names are safe): escape those
        rows.append((str(i), lay.prefix[i] + label, source, str(row.line or ""), text,
                     printable(row.formula), count_text(row.params), count_text(row.macs)))
    return rows


def table(report: Report, bold: bool = False, width: int | None = None, depth: int | None = None) -> str:
    """The per-layer table as plain text (drawn by hand: rich.Table costs ~0.2 s for ResNet-50),
    fitted to `width` columns (None: as wide as it needs): the formula column wraps, or is left
    out when too narrow to wrap, then layer labels are cut."""
    lines, notes = fitted(table_rows(report, depth), width, bold)
    if depth is not None and any(r.depth > depth for r in report.rows):
        notes.append(f"▸ marks a row that sums the rows deeper than depth {depth} inside it")
    return "\n".join(lines + [f"({note})" for note in notes])


def fitted(rows: list[tuple[str, ...]], width: int | None, bold: bool) -> tuple[list[str], list[str]]:
    columns = list(COLUMNS)
    widths = [max(len(h), max(map(len, column), default=0)) for h, column in zip(columns, zip(*rows))] \
        if rows else [len(h) for h in columns]
    keep = [True] * len(columns)
    keep[2] = any(r[2] for r in rows)  # no `from` column for a plain chain of layers
    notes: list[str] = []
    wrap = None
    if width is not None and _total(widths, keep) > width:
        room = width - (_total(widths, keep) - widths[5])
        if room >= MIN_FORMULA:
            wrap = widths[5] = room
        else:
            keep[5] = False
            notes.append(f"the formula column is left out to fit {width} columns; --wide prints it")
        over = _total(widths, keep) - width
        if over > 0:
            widths[1] = max(MIN_LABEL, widths[1] - over, len("layer"))
            rows = [r[:1] + (_cut(r[1], widths[1]),) + r[2:] for r in rows]
    picked = [i for i, k in enumerate(keep) if k]
    # one format string for every line: str.format pads in C, ~10x faster than per-cell calls
    template = "  ".join(f"{{:{'>' if columns[i] in RIGHT_ALIGNED else '<'}{widths[i]}}}" for i in picked)
    header = template.format(*(columns[i] for i in picked)).rstrip()
    if bold:
        header = f"\033[1m{header}\033[0m"
    rule = "  ".join("─" * widths[i] for i in picked)
    if wrap is None:
        body = [template.format(*(r[i] for i in picked)).rstrip() for r in rows]
    else:
        body = [line for r in rows for line in _wrapped(template, r, picked, wrap)]
    return [header, rule, *body, rule], notes


def _total(widths: list[int], keep: list[bool]) -> int:
    kept = [w for w, k in zip(widths, keep) if k]
    return sum(kept) + 2 * (len(kept) - 1)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _wrapped(template: str, row: tuple[str, ...], picked: list[int], width: int) -> list[str]:
    """A row whose formula is wider than `width`: the rest of the formula on lines below, alone."""
    parts = textwrap.wrap(row[5], width, break_on_hyphens=False) or [""]
    lines = [template.format(*(parts[0] if i == 5 else row[i] for i in picked)).rstrip()]
    lines += [template.format(*(part if i == 5 else "" for i in picked)).rstrip() for part in parts[1:]]
    return lines


def totals(report: Report) -> list[str]:
    lines = [
        f"input {shape_text(report.input)} → output {shape_text(report.output) if report.output else '?'}",
        f"params: {human(report.params)}  (trainable {count_text(report.trainable_params)}, "
        f"non-trainable {count_text(report.non_trainable_params)})",
        f"buffers: {count_text(report.buffers)}",
        f"MACs: {human(report.macs)}   FLOPs (= 2×MACs): {human(report.flops)}",
        f"parameter memory (float32): {human_bytes(report.param_bytes)}",
        f"activation memory (batch 1, float32, every layer's output): {human_bytes(report.activation_bytes)}",
    ]
    if report.constraints:
        lines.append(f"input sizes {', '.join(report.symbols)} must satisfy:")
        lines += [f"  - {c}" for c in report.constraints]
    return lines


def terminal_width(stream) -> int | None:
    """The width to fit: $COLUMNS when set, else the terminal's; None (no limit) for a pipe or file."""
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return max(int(os.environ["COLUMNS"]), 20)
    if hasattr(stream, "isatty") and stream.isatty():
        return max(shutil.get_terminal_size().columns, 20)
    return None


def print_report(report: Report, stream=None, title: str | None = None, wide: bool = False,
                 depth: int | None = None) -> None:
    """The table and totals, fitted to the terminal's width unless `wide`; `depth`: containers
    deeper than it collapse into their row (the totals are always the whole network's)."""
    stream = stream or sys.stdout
    bold = stream.isatty() if hasattr(stream, "isatty") else False
    width = None if wide else terminal_width(stream)
    # the table's cells are escaped already; the title and totals echo names and formulas
    lines = [printable(title or report.name), table(report, bold=bold, width=width, depth=depth),
             *map(printable, totals(report))]
    if width is not None:
        lines = [part for line in lines for part in _fit_line(line, width)]
    stream.write("\n".join(lines) + "\n")


def _fit_line(text: str, width: int) -> list[str]:
    if "\n" in text or len(text) <= width:
        return [text]
    indent = " " * (len(text) - len(text.lstrip(" -")))
    return textwrap.wrap(text, width, subsequent_indent=indent + "  ", break_on_hyphens=False) or [text]
