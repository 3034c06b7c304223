"""A series-parallel layout, written as SVG: a list is a vertical stack, the columns of a residual,
parallel or aux head stand side by side, a block is a box around what it holds; `from:` edges run
in lanes on the right of their list. Every frame is laid out in its own coordinates (top-left 0, 0;
entry at the top centre, exit at the bottom centre) and placed by its parent with a translate, so
the layout is one pass, linear in the number of boxes. Text widths are estimated for a monospace
font (CHAR_W per character), so no font metrics or layout engine are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from netspec.errors import printable
from netspec.layers.base import shape_text
from netspec.shapes.render import count_text
from netspec.shapes.report import Row

from .tree import AUX, IDENTITY, LEAF, Item

FONT = 11  # px, monospace
CHAR_W = 6.7  # px per character at FONT (DejaVu Sans Mono is 0.602 em)
LINE = 15  # px per text line
PAD = 8  # px inside a box
GAP = 22  # px between boxes of a list (the arrow)
COLUMN_GAP = 18  # px between columns
HEADER = 20  # px: a group's title band
LANE = 14  # px per `from:` lane
MIN_BOX_W = 150
MAX_LABEL = 56  # characters of a layer's label shown in its box (the whole label is its tooltip)
MAX_TITLE = 84  # characters of a group's title shown at least (its tooltip holds all of it)


def esc(text: object, limit: int | None = None) -> str:
    """Text from the spec, safe in XML text and attributes: unprintable characters escaped as in the
    terminal (netspec.errors.printable), then & < > and quotes."""
    return escape(printable(text, limit), {'"': "&quot;", "'": "&#39;"})


def text_w(text: str) -> float:
    return len(text) * CHAR_W


@dataclass
class Frame:
    w: float
    h: float
    parts: list[str] = field(default_factory=list)
    boxes: int = 0

    def place(self, x: float, y: float) -> str:
        return f'<g transform="translate({x:.1f},{y:.1f})">{"".join(self.parts)}</g>'


def arrow(x1: float, y1: float, x2: float, y2: float, css: str = "edge") -> str:
    return f'<path class="{css}" d="M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}" marker-end="url(#arrow)"/>'


def polyline(points, css: str = "edge", head: bool = True) -> str:
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    return f'<path class="{css}" d="{d}"' + (' marker-end="url(#arrow)"' if head else "") + "/>"


def title_of(row: Row, name: str | None) -> str:
    return f"{name}: {row.label}" if name else row.label


def figures(row: Row) -> str:
    shape = shape_text(row.output) if row.output is not None else "?"
    return f"{shape} · {count_text(row.params)} params"


def box(lines: list[str], css: str, tooltip: str, kind: str) -> Frame:
    """A box of text lines (already cut to length; escaped here)."""
    w = max(MIN_BOX_W, max(text_w(t) for t in lines) + 2 * PAD)
    h = len(lines) * LINE + 2 * PAD - 4
    texts = "".join(f'<text x="{PAD}" y="{PAD + 11 + i * LINE}" class="{"t1" if i == 0 else "t2"}">{esc(t)}</text>'
                    for i, t in enumerate(lines))
    return Frame(w, h, [f'<g class="{css}" data-kind="{esc(kind)}"><title>{esc(tooltip)}</title>'
                        f'<rect width="{w:.1f}" height="{h:.1f}" rx="4"/>{texts}</g>'], 1)


def leaf_box(row: Row, name: str | None) -> Frame:
    title = title_of(row, name)
    shown = printable(title, MAX_LABEL)
    return box([shown, figures(row)], "node", f"{title}\n{row.formula}", row.kind)


def collapsed_box(item: Item) -> Frame:
    row = item.row
    title = f"{title_of(item.row, item.name)} ({row.formula})"
    return box([printable(title, MAX_LABEL), figures(row)], "node collapsed", title, row.kind)


def item_frame(item: Item, depth: int | None) -> Frame:
    if item.layout == LEAF:
        return leaf_box(item.row, item.name)
    if depth is not None and item.row.depth >= depth:
        return collapsed_box(item)
    return group_frame(item, depth)


def list_frame(items: list[Item], depth: int | None) -> Frame:
    """Items stacked, entry at the top, exit at the bottom; `from:` edges in lanes on the right."""
    if not items:
        return Frame(2 * PAD, GAP, [arrow(PAD, 0, PAD, GAP)])
    frames = [item_frame(item, depth) for item in items]
    lanes = [(i, s) for i, item in enumerate(items) for s in item.sources if s != i - 1]
    inner = max(f.w for f in frames)
    cx = inner / 2
    w = inner + (LANE * (len(lanes) + 1) if lanes else 0)
    tops, y, parts = [], GAP, []
    for i, frame in enumerate(frames):
        tops.append(y)
        if i == 0 and -1 in items[0].sources or i > 0 and i - 1 in items[i].sources:
            parts.append(arrow(cx, y - GAP, cx, y))
        parts.append(frame.place(cx - frame.w / 2, y))
        y += frame.h + GAP
    parts.append(arrow(cx, y - GAP, cx, y))  # the list's output: its last item
    for lane, (i, source) in enumerate(lanes):
        nth = sum(1 for j, _ in lanes[:lane] if j == i)  # edges into the same item end one below the other
        parts.append(from_edge(items, frames, tops, cx, inner + LANE * (lane + 1), i, source, nth))
    return Frame(w, y, parts, sum(f.boxes for f in frames))


def from_edge(items, frames, tops, cx, lane_x, i, source, nth: int) -> str:
    """An arrow from a source (an earlier item, -1 the list's input, (index, part) a split's part)
    to item i, through its lane."""
    index, part = source if isinstance(source, tuple) else (source, None)
    if index < 0:
        start, label = (cx, 4.0), "input"
    else:
        start = (cx + frames[index].w / 2, tops[index] + frames[index].h - 6)
        label = items[index].name or f"#{items[index].row.index}"
    if part is not None:
        label = f"{label}.{part}"
    end_y = tops[i] + 8 + 13 * (nth % 3)
    end = (cx + frames[i].w / 2, end_y)
    path = polyline([start, (lane_x, start[1]), (lane_x, end_y), end], "from-edge")
    return (f'<g class="from"><title>from: {esc(label)}</title>{path}'
            f'<text class="t3" x="{end[0] + 4:.1f}" y="{end_y - 3:.1f}">{esc(label, 24)}</text></g>')


def group_frame(item: Item, depth: int | None) -> Frame:
    """A titled box around its columns (one for a block), joined by lines from the entry at the top
    to the merge box (or the exit) at the bottom."""
    row = item.row
    columns = [None if c == IDENTITY else list_frame(c, depth) for c in item.columns]
    widths = [64.0 if c is None else c.w for c in columns]
    content_w = sum(widths) + COLUMN_GAP * (len(widths) - 1)
    full_title = f"{title_of(row, item.name)} · {row.formula} · {figures(row)}"
    title = printable(full_title, max(MAX_TITLE, int(content_w / CHAR_W)))  # the whole title is its tooltip
    col_h = max([c.h for c in columns if c is not None] + [GAP])
    merge = leaf_box(item.merge, None) if item.merge is not None else None
    w = max(content_w + 2 * PAD, text_w(title) + 2 * PAD)
    cx, x, top = w / 2, (w - content_w) / 2, HEADER + (GAP if len(columns) > 1 else 0)
    bottom = top + col_h
    parts = [f'<rect class="frame" width="{w:.1f}" height="{{h}}" rx="6"/>',
             f'<text class="tg" x="{PAD}" y="14">{esc(title)}</text>']
    boxes = 1
    for column, width in zip(columns, widths):
        mid = x + 12 if column is None else x + width / 2
        if len(columns) > 1:
            parts.append(polyline([(cx, HEADER), (cx, HEADER + 6), (mid, HEADER + 6), (mid, top)], head=False))
        if column is None:  # the identity: one line, to the merge or (aux) the exit
            parts.append(polyline([(mid, top), (mid, bottom)], "edge identity", head=False))
            parts.append(f'<text class="t3" x="{mid + 3:.1f}" y="{top + 14:.1f}">'
                         f'{"pass" if item.layout == AUX else "identity"}</text>')
        else:
            parts.append(column.place(x, top))
            boxes += column.boxes
            if column.h < col_h and item.layout != AUX:
                parts.append(polyline([(mid, top + column.h), (mid, bottom)], head=False))
        if len(columns) > 1 and (merge is not None or column is None):
            parts.append(polyline([(mid, bottom), (mid, bottom + 6), (cx, bottom + 6), (cx, bottom + GAP)],
                                  head=merge is not None))
        x += width + COLUMN_GAP
    h = bottom + (GAP if len(columns) > 1 else 0)
    if merge is not None:
        parts.append(merge.place(cx - merge.w / 2, h))
        h += merge.h + GAP
        parts.append(arrow(cx, h - GAP, cx, h))
        boxes += 1
    h += PAD
    parts[0] = parts[0].replace("{h}", f"{h:.1f}")
    return Frame(w, h, [f'<g class="group" data-kind="{esc(row.kind)}" data-layout="{item.layout}">'
                        f'<title>{esc(full_title)}</title>{"".join(parts)}</g>'], boxes)
