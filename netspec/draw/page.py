"""The HTML page: the picture at each depth (buttons choose one; a few lines of inline script, none
fetched), and an outline of the blocks as nested <details>, each collapsible, with its subtotal."""

from __future__ import annotations

from netspec.layers.base import shape_text
from netspec.shapes.render import count_text
from netspec.shapes.report import Report

from . import MAX_DRAW_BOXES, boxes_drawn, max_group_depth, svg, totals_lines, tree
from .layout import esc, title_of

MAX_PAGE_LEVELS = 8  # pictures in one page besides the full one (one per depth): bounds the page's size

CSS = """
body { font-family: system-ui, sans-serif; margin: 1em; color: #1b2430; }
nav button { margin-right: .3em; } nav button.on { font-weight: bold; background: #dde5ee; }
.picture { display: none; overflow: auto; border: 1px solid #ccd; margin: .6em 0; }
.picture.on { display: block; }
details { margin-left: 1.2em; } summary { cursor: pointer; } .leaf { margin-left: 2.4em; }
code { font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 12px; }
"""

SCRIPT = """
function show(level) {
  document.querySelectorAll('.picture').forEach(p => p.classList.toggle('on', p.dataset.level === level));
  document.querySelectorAll('nav button').forEach(b => b.classList.toggle('on', b.dataset.level === level));
}
window.addEventListener('DOMContentLoaded', () => { if (location.hash) show(location.hash.slice(1)); });
"""


def levels(items: list[tree.Item], depth: int | None) -> list[int | None]:
    """The depths the page has a picture for: the first MAX_PAGE_LEVELS, all open, and the one asked
    for; a level over MAX_DRAW_BOXES boxes is left out (the one asked for was checked by `svg`)."""
    deepest = max_group_depth(items)
    chosen = [*range(min(deepest, MAX_PAGE_LEVELS)), None]
    if depth is not None and depth not in chosen:
        chosen.append(depth)
    return [d for d in sorted(chosen, key=lambda d: float("inf") if d is None else d)
            if d == depth or boxes_drawn(items, d) <= MAX_DRAW_BOXES]


def outline(items: list[tree.Item], depth: int | None, out: list[str]) -> None:
    """Nested <details>, one per group, open up to `depth`; a line per layer."""
    for item in items:
        row = item.row
        shape = shape_text(row.output) if row.output is not None else "?"
        text = (f"<code>{esc(title_of(row, item.name), 200)}</code> → {esc(shape)} · "
                f"{esc(count_text(row.params))} params")
        if not item.group:
            out.append(f'<div class="leaf">{text}</div>')
            continue
        is_open = ' open="open"' if depth is None or row.depth < depth else ""
        out.append(f"<details{is_open}><summary>{text} · {esc(row.formula)}</summary>")
        for column in item.columns:
            if column == tree.IDENTITY:
                out.append('<div class="leaf"><code>identity</code></div>')
            else:
                outline(column, depth, out)
        if item.merge is not None:
            out.append(f'<div class="leaf"><code>{esc(item.merge.label)}</code> → '
                       f"{esc(shape_text(item.merge.output))}</div>")
        out.append("</details>")


def inline(picture: str, key: str) -> str:
    """An SVG document as a part of the page: no namespace URL (HTML knows <svg>), its own marker id
    (a marker in a hidden picture is not drawn in a shown one)."""
    return picture.replace(' xmlns="http://www.w3.org/2000/svg"', "").replace(
        'id="arrow"', f'id="arrow-{key}"').replace("url(#arrow)", f"url(#arrow-{key})")


def html(report: Report, depth: int | None, items: list[tree.Item]) -> str:
    first = svg(report, depth, items)  # checks the size of the picture asked for
    pictures, buttons = [], []
    for level in levels(items, depth):
        key = "all" if level is None else str(level)
        picture = inline(first if level == depth else svg(report, level, items), key)
        on = " on" if level == depth else ""
        pictures.append(f'<div class="picture{on}" data-level="{key}">{picture}</div>')
        name = "all open" if level is None else f"depth {level}"
        buttons.append(f'<button class="{on.strip()}" data-level="{key}" onclick="show(\'{key}\')">{name}</button>')
    tree_lines: list[str] = []
    outline(items, depth, tree_lines)
    totals = "".join(f"<div>{esc(line)}</div>" for line in totals_lines(report))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/><title>{esc(report.name, 120)}</title>'
            f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>"
            f"<h1>{esc(report.name, 120)}</h1><nav>{''.join(buttons)}</nav>{''.join(pictures)}"
            f"<h2>Totals</h2>{totals}<h2>Blocks</h2>{''.join(tree_lines)}</body></html>\n")
