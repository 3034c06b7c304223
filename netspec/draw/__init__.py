"""`netspec draw`: the network as a picture (SVG, or an HTML page holding it), from the static report.

    report = netspec.check(netspec.load("specs/lenet.yaml"))
    svg = netspec.draw.svg(report, depth=None)

Every box shows a layer's kind and arguments, its output shape and params; blocks, macros, residuals,
parallels and aux heads are titled group boxes with their subtotals; a group whose row is at depth
`depth` or deeper (0: the top-level items) is drawn as one box with its subtotal. The totals are
the report's. Nothing is fetched to view the files: no scripts or fonts from elsewhere.
"""

from __future__ import annotations

from netspec.errors import SpecError
from netspec.layers.base import shape_text
from netspec.shapes.render import count_text, human, human_bytes
from netspec.shapes.report import Report

from . import tree
from .layout import FONT, GAP, LINE, PAD, box, esc, list_frame, text_w

MAX_DRAW_BOXES = 20_000  # boxes in one picture (a spec may expand to 100,000 layers): draw fewer with --depth
SUFFIXES = (".svg", ".html")

STYLE = f"""
text {{ font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: {FONT}px; fill: #1b2430; }}
.t2 {{ fill: #45607a; }} .t3 {{ font-size: 9px; fill: #8a5a00; }} .tg {{ font-weight: bold; fill: #234; }}
.node rect {{ fill: #e8f1fb; stroke: #4a78a8; stroke-width: 1; }}
.collapsed rect {{ fill: #fdf1dc; stroke: #b07b1c; stroke-width: 2; }}
.group > rect.frame {{ fill: #f7f9fc; fill-opacity: 0.6; stroke: #8aa0b8; stroke-dasharray: 4 2; }}
.group[data-layout=residual] > rect.frame {{ fill: #eef8ee; stroke: #5a9a5a; }}
.group[data-layout=parallel] > rect.frame {{ fill: #f5effa; stroke: #8a64b0; }}
.group[data-layout=aux] > rect.frame {{ fill: #fbf3f0; stroke: #b07060; }}
.edge {{ fill: none; stroke: #506070; stroke-width: 1.2; }}
.identity {{ stroke: #5a9a5a; stroke-width: 2; }}
.from-edge {{ fill: none; stroke: #c07000; stroke-width: 1.4; stroke-dasharray: 5 3; }}
.io rect {{ fill: #dde5ee; stroke: #506070; }} .totals {{ fill: #1b2430; }}
"""


def boxes_drawn(items: list[tree.Item], depth: int | None) -> int:
    count = 0
    for item in items:
        count += 1 + (item.merge is not None)
        if item.group and (depth is None or item.row.depth < depth):
            count += sum(boxes_drawn(c, depth) for c in item.columns if c != tree.IDENTITY)
    return count


def totals_lines(report: Report) -> list[str]:
    return [f"input {shape_text(report.input)} → output {shape_text(report.output) if report.output else '?'}",
            f"params: {human(report.params)}  (trainable {count_text(report.trainable_params)}, "
            f"non-trainable {count_text(report.non_trainable_params)})",
            f"MACs: {human(report.macs)}   parameter memory (float32): {human_bytes(report.param_bytes)}"]


def check_size(report: Report, items: list[tree.Item], depth: int | None) -> None:
    count = boxes_drawn(items, depth)
    if count > MAX_DRAW_BOXES:
        mark = report.root.origin.mark if report.root is not None else None
        fits = [d for d in range(max_group_depth(items)) if boxes_drawn(items, d) <= MAX_DRAW_BOXES]
        hint = f"--depth {fits[-1]} draws {boxes_drawn(items, fits[-1]):,}" if fits else "no depth draws fewer"
        raise SpecError.at(mark, "draw", f"the picture would hold {count:,} boxes, more than {MAX_DRAW_BOXES:,}",
                           f"collapse groups with --depth N: {hint}")


def svg(report: Report, depth: int | None = None, items: list[tree.Item] | None = None) -> str:
    """The picture as a standalone SVG document."""
    items = tree.build(report) if items is None else items
    check_size(report, items, depth)
    body = list_frame(items, depth)
    header = [report.name, "all groups open" if depth is None else f"--depth {depth}: deeper groups drawn as one box"]
    io_in = box([f"input {shape_text(report.input)}"], "io", "the network's input", "input")
    io_out = box([f"output {shape_text(report.output) if report.output else '?'}"], "io", "the network's output",
                 "output")
    totals = totals_lines(report)
    w = max(body.w, io_in.w, *(text_w(t) for t in totals + header)) + 4 * PAD
    cx, y = w / 2, 2 * PAD
    parts = [f'<text class="tg" x="{2 * PAD}" y="{y + 12}">{esc(header[0], 120)}</text>',
             f'<text class="t2" x="{2 * PAD}" y="{y + 12 + LINE}">{esc(header[1])}</text>']
    y += 2 * LINE + PAD
    parts.append(io_in.place(cx - io_in.w / 2, y))
    y += io_in.h
    parts.append(body.place(cx - body.w / 2, y))
    y += body.h
    parts.append(io_out.place(cx - io_out.w / 2, y))
    y += io_out.h + GAP
    parts += [f'<text class="totals" x="{2 * PAD}" y="{y + i * LINE:.1f}">{esc(t)}</text>'
              for i, t in enumerate(totals)]
    h = y + len(totals) * LINE + PAD
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" data-boxes="{body.boxes}">'
            f"<title>{esc(report.name, 120)}</title><style>{STYLE}</style>"
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#506070"/></marker></defs>'
            f'<rect width="100%" height="100%" fill="#ffffff"/>{"".join(parts)}</svg>\n')


def max_group_depth(items: list[tree.Item]) -> int:
    """One more than the deepest group's row depth (0: no groups)."""
    return max((it.row.depth + 1 for it in tree.walk(items) if it.group), default=0)


def write(report: Report, path, depth: int | None = None) -> int:
    """Write the SVG or HTML file `path` names (its suffix); returns the number of boxes drawn."""
    from pathlib import Path

    from .page import html

    path = Path(path)
    items = tree.build(report)
    text = svg(report, depth, items) if path.suffix.lower() == ".svg" else html(report, depth, items)
    partial = path.with_name(f".{path.name}.partial")  # a failed write leaves no half-written picture
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return boxes_drawn(items, depth)


__all__ = ["MAX_DRAW_BOXES", "SUFFIXES", "svg", "write"]
