"""Safe YAML loading that keeps the position of every key and value.

We build plain dict/list trees directly from ruamel.yaml's *event* stream instead of its
constructor: no Python object is ever constructed from a tag, nesting depth is checked
before anything recursive runs, and every alias is charged with the size of what it
repeats, so a "billion laughs" file fails after a fixed budget instead of hanging.

Files are read by `netspec.reading` (regular files only, size capped while reading); control
characters are refused here at their line:col before the YAML parser sees them, so its
messages never echo them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, events
from ruamel.yaml.error import MarkedYAMLError

from netspec.errors import Mark, SpecError
from netspec.reading import MAX_BYTES, read_source, shorten_name

MAX_DEPTH = 64
MAX_NODES = 200_000  # nodes after alias expansion
# Integer literals beyond this are "too large": the same bound as expression results
# (netspec.lang.exprs.MAX_MAGNITUDE, not imported: exprs imports this module). 2^62 is far above any
# real size or count and keeps every product of two checked values exact and fast.
MAX_INT_LITERAL = 1 << 62

# Only the event stream is used (never a constructor). libyaml (ruamel.yaml.clib) gives it 4×
# faster than the pure-Python parser (a 90,000-layer spec: 0.4 s instead of 1.6 s) with the same
# events and marks, except two things a valid spec rarely has: empty plain scalars (`- ` with
# nothing) are marked elsewhere, and syntax errors are worded differently. Those texts are parsed
# again by the pure parser, whose marks and messages the diagnostics are written against.
_FAST_PARSER = YAML(typ="safe")  # libyaml when installed, else the same pure parser
_PURE_PARSER = YAML(typ="safe", pure=True)


class _ReparsePure(Exception):
    """The fast parser met something only the pure one marks as the diagnostics expect."""


_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq")} | {"!"}
_INT = re.compile(r"[-+]?[0-9]+$")
_INT_OCT = re.compile(r"0o[0-7]+$")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"\.(nan|NaN|NAN)$")
# Characters a spec may not contain, raw or produced by a "\e"-style escape: C0 controls except
# tab/newline/CR, DEL, C1 controls, surrogates and the Unicode noncharacters. Tabs have their own
# friendlier YAML message; a BOM (U+FEFF) is allowed.
_NONCHARACTERS = "\ufdd0-\ufdef\ufffe\uffff" + "".join(
    chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(1, 17))
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + _NONCHARACTERS + "]")
_LINE_BREAK = re.compile("\r\n|[\r\n\u2028\u2029]")  # what the YAML parser counts as a new line
_CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "backspace", 0x0B: "vertical tab", 0x0C: "form feed",
                  0x1B: "ESC", 0x7F: "DEL", 0x9B: "CSI"}


def describe_character(char: str) -> str:
    """`U+001B (ESC)`, `U+0085 (a C1 control character)`, `U+FFFE (a Unicode noncharacter)`."""
    code = ord(char)
    if code in _CONTROL_NAMES:
        what = _CONTROL_NAMES[code]
    elif code < 0x20:
        what = "a control character"
    elif 0x80 <= code <= 0x9F:
        what = "a C1 control character"
    elif 0xD800 <= code <= 0xDFFF:
        what = "a lone surrogate"
    else:
        what = "a Unicode noncharacter"
    return f"U+{code:04X} ({what})"


def check_characters(text: str, filename: str) -> None:
    """Refuse control characters at their line:col (tabs, newlines and a leading BOM are fine)."""
    found = _FORBIDDEN.search(text)
    if found is None:
        return
    pos = found.start()
    breaks = list(_LINE_BREAK.finditer(text, 0, pos))
    line_start = breaks[-1].end() if breaks else 0
    col = pos - line_start + 1
    if not breaks and text.startswith("\ufeff"):
        col -= 1  # like the YAML parser's columns, and editors: a leading BOM is not a column
    raise SpecError.at(Mark(filename, len(breaks) + 1, col), "",
                       f"character {describe_character(found.group())} is not allowed in a spec",
                       "a spec is plain text: delete it (editors may show it as ^[, <1b> or a box)")


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
    name = display or str(path)
    return parse_yaml(read_source(path, name), shorten_name(name))


def parse_yaml(text: str, filename: str = "<string>") -> Any:
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError.at(Mark(filename, 1, 1), "", f"text is over the {MAX_BYTES:,}-byte limit for a spec")
    check_characters(text, filename)
    try:
        return _build(_FAST_PARSER, text, filename, fast=True)
    except (_ReparsePure, MarkedYAMLError):
        pass
    try:
        return _build(_PURE_PARSER, text, filename, fast=False)
    except MarkedYAMLError as e:
        raise _yaml_syntax_error(e, filename, text) from None


def _build(parser: YAML, text: str, filename: str, fast: bool) -> Any:
    builder = _TreeBuilder(filename)
    for event in parser.parse(text):
        if fast and isinstance(event, events.ScalarEvent) and event.value == "" and not event.style:
            raise _ReparsePure()
        builder.feed(event)
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
            container = (YMap(self.mark(event)) if isinstance(event, events.MappingStartEvent)
                         else YSeq(self.mark(event)))
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
        bad = _FORBIDDEN.search(value)
        if bad:  # the raw text was checked: this came from an escape like "\e" or "\x1b"
            self.fail(event, f"this value contains character {describe_character(bad.group())} (written as an escape)",
                      "a spec may not contain control characters, not even escaped ones")
        plain = event.implicit[0] and tag is None
        if tag == _CORE + "str" or tag == "!" or (not plain and tag is None):
            return value
        if plain and value == "<<" and self.stack and isinstance(self.stack[-1].container, YMap) \
                and self.stack[-1].pending_key is _NO_KEY:
            return _MERGE
        try:
            resolved = _resolve_plain(value)
        except _TooLarge as e:
            self.fail(event, str(e), e.hint)
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


class _TooLarge(ValueError):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def _resolve_plain(value: str):
    """YAML 1.2 core schema: `yes`/`on` stay strings, `1e-3` is a float."""
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    if _INT.match(value):
        return _int_literal(value, value.lstrip("+-"), 10)
    if _INT_OCT.match(value):
        return _int_literal(value, value[2:], 8)
    if _INT_HEX.match(value):
        return _int_literal(value, value[2:], 16)
    if _FLOAT.match(value):
        number = float(value)  # never raises: float() has no digit limit, it rounds to 0 or inf
        if number in (float("inf"), float("-inf")):
            raise _TooLarge(f"number `{_clip(value)}` is too large (it overflows to infinity)",
                            "write `.inf` (or `-.inf`) if you mean infinity")
        return number
    if _INF.match(value):
        return float("-inf") if value.startswith("-") else float("inf")
    if _NAN.match(value):
        return float("nan")
    return value


def _int_literal(text: str, digits: str, base: int) -> int:
    """int(text) for literals up to ±MAX_INT_LITERAL, before Python's 4,300-digit limit is reached."""
    significant = digits.lstrip("0")
    # 22 octal digits (the longest in-range literal) bound every base; the exact test follows
    if len(significant) > 22 or abs(value := int(significant or "0", base)) > MAX_INT_LITERAL:
        raise _TooLarge(f"integer `{_clip(text)}` is too large (the limit is ±2^62 = {MAX_INT_LITERAL:,})",
                        "sizes and counts in a spec are far smaller; check for a typo")
    return -value if text.startswith("-") else value


def _clip(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}… ({len(text):,} characters)"
