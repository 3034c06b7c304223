"""Safe YAML loading that keeps the position of every key and value.

We build plain dict/list trees directly from ruamel.yaml's *event* stream instead of its
constructor: no Python object is ever constructed from a tag, nesting depth is checked
before anything recursive runs, and every alias is charged with the size of what it
repeats, so a "billion laughs" file fails after a fixed budget instead of hanging.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, events
from ruamel.yaml.error import MarkedYAMLError

from netspec.errors import Mark, SpecError

MAX_BYTES = 1 << 20  # 1 MiB: the largest shipped spec is under 5 KiB
MAX_DEPTH = 64
MAX_NODES = 200_000  # nodes after alias expansion

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq")} | {"!"}
_INT = re.compile(r"[-+]?[0-9]+$")
_INT_OCT = re.compile(r"0o[0-7]+$")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"\.(nan|NaN|NAN)$")


class YMap(dict):
    """A mapping that remembers where it, its keys and its values were written."""

    def __init__(self, mark: Mark):
        super().__init__()
        self.mark = mark
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}


class YSeq(list):
    """A sequence that remembers where it and each item were written."""

    def __init__(self, mark: Mark):
        super().__init__()
        self.mark = mark
        self.item_marks: list[Mark] = []


def mark_of(container: Any, key: Any, default: Mark | None = None) -> Mark | None:
    """The position of `container[key]` (its value), falling back to the container's own."""
    if isinstance(container, YMap):
        return container.value_marks.get(key, container.mark)
    if isinstance(container, YSeq) and isinstance(key, int) and 0 <= key < len(container.item_marks):
        return container.item_marks[key]
    return getattr(container, "mark", default)


def key_mark_of(container: Any, key: Any) -> Mark | None:
    if isinstance(container, YMap):
        return container.key_marks.get(key, container.mark)
    return mark_of(container, key)


def load_yaml_file(path: str | Path, display: str | None = None) -> Any:
    path = Path(path)
    name = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SpecError.at(Mark(name, 1, 1), "", f"file is {size:,} bytes, over the {MAX_BYTES:,}-byte limit for a spec")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError.at(None, "", f"{name}: no such file") from None
    except IsADirectoryError:
        raise SpecError.at(None, "", f"{name}: is a directory, expected a YAML spec file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError.at(Mark(name, line, col), "", f"file is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_yaml(text, name)


def parse_yaml(text: str, filename: str = "<string>") -> Any:
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise SpecError.at(Mark(filename, 1, 1), "", f"text is over the {MAX_BYTES:,}-byte limit for a spec")
    builder = _TreeBuilder(filename)
    try:
        for event in YAML(typ="rt").parse(text):
            builder.feed(event)
    except MarkedYAMLError as e:
        raise _yaml_syntax_error(e, filename, text) from None
    return builder.result()


def _yaml_syntax_error(e: MarkedYAMLError, filename: str, text: str = "") -> SpecError:
    """ruamel's message, translated for the mistakes people actually make."""
    pos = e.problem_mark or e.context_mark
    problem = (e.problem or "invalid YAML").strip()
    context = (e.context or "").strip()
    message, hint = f"{problem} ({context})" if context else problem, None
    if "'\\t'" in problem:
        message, hint = "a tab character: YAML indents with spaces only", "replace the tab with spaces"
    elif context.startswith("while parsing a flow") and e.context_mark is not None:
        opener, closer = ("[", "]") if "sequence" in context else ("{", "}")
        found = e.problem_mark.line + 1 if e.problem_mark else "?"
        pos = e.context_mark  # where the bracket was opened, like Python's "'[' was never closed"
        message, hint = f"this `{opener}` is never closed ({problem} at line {found})", f"add the missing `{closer}`"
    elif problem.startswith("expected <block end>"):
        message = "bad indentation: this line does not line up with the block it belongs to"
        hint = "keys of one mapping, and the `- ` items of one list, start in the same column"
    elif problem == "mapping values are not allowed here":
        lines = text.splitlines()
        above = lines[pos.line - 1] if pos and 0 < pos.line <= len(lines) else ""
        bare = re.match(r"^\s*-\s+([A-Za-z_][A-Za-z0-9_]*)\s*(#.*)?$", above)
        message = "unexpected `:` here (mapping values are not allowed here)"
        hint = (f"write `- {bare.group(1)}:` (with a colon) when `name:`, `from:` or `repeat:` follow it"
                if bare else "quote a value that contains `: `, or check the indentation")
    mark = Mark(filename, pos.line + 1, pos.column + 1) if pos else Mark(filename, 1, 1)
    return SpecError.at(mark, "", f"invalid YAML: {message}", hint)


class _Frame:
    __slots__ = ("container", "anchor", "pending_key", "key_mark", "size", "merged")

    def __init__(self, container, anchor):
        self.container = container
        self.anchor = anchor
        self.pending_key = _NO_KEY
        self.key_mark = None
        self.size = 1
        self.merged: set = set()


_NO_KEY = object()
_MERGE = object()


class _TreeBuilder:
    """Turns parser events into YMap/YSeq/scalars, enforcing the loader's limits."""

    def __init__(self, filename: str):
        self.filename = filename
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0
        self.documents = 0
        self.root: Any = None

    def mark(self, event) -> Mark:
        return Mark(self.filename, event.start_mark.line + 1, event.start_mark.column + 1)

    def fail(self, event, message: str, hint: str | None = None):
        raise SpecError.at(self.mark(event), "", message, hint)

    def result(self) -> Any:
        return self.root

    def feed(self, event) -> None:
        if isinstance(event, events.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.fail(event, "a spec file holds one YAML document, found a second `---`")
        elif isinstance(event, (events.MappingStartEvent, events.SequenceStartEvent)):
            self._check_tag(event, "map" if isinstance(event, events.MappingStartEvent) else "seq")
            if len(self.stack) >= MAX_DEPTH:
                self.fail(event, f"nesting is deeper than {MAX_DEPTH} levels")
            container = YMap(self.mark(event)) if isinstance(event, events.MappingStartEvent) else YSeq(self.mark(event))
            self.stack.append(_Frame(container, event.anchor))
        elif isinstance(event, (events.MappingEndEvent, events.SequenceEndEvent)):
            frame = self.stack.pop()
            if frame.anchor:
                self.anchors[frame.anchor] = (frame.container, frame.size)
            # its items were charged as they arrived; only the container itself is new
            self._add(event, frame.container, frame.size, frame.container.mark, charge=1)
        elif isinstance(event, events.ScalarEvent):
            value = self._scalar(event)
            if event.anchor:
                self.anchors[event.anchor] = (value, 1)
            mark = self.mark(event)
            frame = self.stack[-1] if self.stack else None
            if event.value == "" and event.style is None and frame is not None \
                    and isinstance(frame.container, YMap) and frame.pending_key is not _NO_KEY:
                mark = frame.key_mark  # `key:` with nothing after it: ruamel marks the next token
            self._add(event, value, 1, mark)
        elif isinstance(event, events.AliasEvent):
            if event.anchor not in self.anchors:
                self.fail(event, f"alias `*{event.anchor}` refers to no anchor defined before it")
            value, size = self.anchors[event.anchor]
            self._add(event, value, size, self.mark(event))

    def _charge(self, event, size: int) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            self.fail(event, f"the document expands to more than {MAX_NODES:,} nodes (alias bomb?)",
                      "aliases (`*name`) may repeat an anchor only a bounded number of times")

    def _add(self, event, value, size: int, mark: Mark, charge: int | None = None) -> None:
        self._charge(event, size if charge is None else charge)
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        frame.size += size
        target = frame.container
        if isinstance(target, YSeq):
            target.append(value)
            target.item_marks.append(mark)
        elif frame.pending_key is _NO_KEY:
            self._take_key(event, frame, value, mark)
        else:
            self._set_value(event, frame, value, mark)

    def _take_key(self, event, frame: _Frame, key, mark: Mark) -> None:
        if isinstance(key, (YMap, YSeq)):
            self.fail(event, "mapping keys must be plain names, not a list or mapping")
        if key is _MERGE:
            frame.pending_key, frame.key_mark = _MERGE, mark
            return
        target = frame.container
        if key in target and key not in frame.merged:
            first = target.key_marks[key]
            self.fail(event, f"duplicate key `{key}` (first written at line {first.line})")
        frame.merged.discard(key)
        frame.pending_key, frame.key_mark = key, mark

    def _set_value(self, event, frame: _Frame, value, mark: Mark) -> None:
        target, key = frame.container, frame.pending_key
        frame.pending_key = _NO_KEY
        if key is _MERGE:
            sources = value if isinstance(value, YSeq) else [value]
            for source in sources:
                if not isinstance(source, YMap):
                    self.fail(event, "`<<` merges a mapping (or a list of mappings) into this one")
                for k, v in source.items():
                    if k not in target:
                        target[k] = v
                        target.key_marks[k] = source.key_marks[k]
                        target.value_marks[k] = source.value_marks[k]
                        frame.merged.add(k)
            return
        target[key] = value
        target.key_marks[key] = frame.key_mark
        target.value_marks[key] = mark

    def _check_tag(self, event, kind: str) -> None:
        tag = event.tag
        if tag is not None and tag != _CORE + kind and tag != "!":
            self.fail(event, f"tag `{_short_tag(tag)}` is not allowed in a spec",
                      "specs are plain data: remove the `!` tag")

    def _scalar(self, event):
        tag, value = event.tag, event.value
        if tag is not None and tag not in _ALLOWED_TAGS:
            self.fail(event, f"tag `{_short_tag(tag)}` is not allowed in a spec",
                      "specs are plain data: remove the `!` tag")
        plain = event.implicit[0] and tag is None
        if tag == _CORE + "str" or tag == "!" or (not plain and tag is None):
            return value
        if plain and value == "<<" and self.stack and isinstance(self.stack[-1].container, YMap) \
                and self.stack[-1].pending_key is _NO_KEY:
            return _MERGE
        resolved = _resolve_plain(value)
        if tag is not None:
            wanted = tag[len(_CORE):]
            if _kind(resolved) != wanted:
                self.fail(event, f"`{value}` is not a valid !!{wanted}")
        return resolved


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]


def _resolve_plain(value: str):
    """YAML 1.2 core schema: `yes`/`on` stay strings, `1e-3` is a float."""
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    if _INT.match(value):
        return int(value)
    if _INT_OCT.match(value):
        return int(value[2:], 8)
    if _INT_HEX.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return float("-inf") if value.startswith("-") else float("inf")
    if _NAN.match(value):
        return float("nan")
    return value
