"""User-facing errors: one GCC-style line per problem, plus an optional hint.

Library code raises a `NetspecError` of the right kind (spec, data, model file, run, export,
option); the CLI formats it in one place (`netspec/cli.py`) and exits 2.
A layer's shape rule raises a plain `ShapeError` without any location: the graph walker
(`netspec.shapes.inference`) adds `file:line:col` and the macro chain once, as ONNX shape inference does.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Mark:
    """A position in a spec file; line and col are 1-based like GCC's."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    mark: Mark | None
    where: str
    message: str
    hint: str | None = None

    def format(self) -> str:
        # every part may echo user text (file names, values, CLI options): escape it all
        prefix = f"{printable(str(self.mark))}: " if self.mark else ""
        where = f"{printable(self.where)}: " if self.where else ""
        text = f"{prefix}error: {where}{printable(self.message)}"
        if self.hint:
            text += f"\n  hint: {printable(self.hint)}"
        return text


# Characters that must never reach a terminal raw: C0/C1 controls and DEL (ESC starts terminal
# commands, CR/LF could forge a fake diagnostic line), format characters (bidi overrides
# reorder what is shown, zero-width ones hide text), line/paragraph separators, surrogates and
# unassigned code points (noncharacters among them).
_ASCII_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})


def printable(text: object, limit: int | None = None, keep_newlines: bool = False) -> str:
    """`text` with every unsafe character written as a Python-style escape (`\\x1b`, `\\u202e`),
    cut to `limit` characters (then `…`); `keep_newlines` for multi-line messages netspec wrote."""
    text = str(text)
    if limit is not None and len(text) > limit:
        return printable(text[:limit], None, keep_newlines) + "…"
    if keep_newlines and "\n" in text:
        return "\n".join(printable(line) for line in text.split("\n"))
    if text.isprintable():  # the common case, decided in C: every unsafe character is unprintable
        return text
    if text.isascii():
        return _ASCII_UNSAFE.sub(lambda m: _escape(m.group()), text) if _ASCII_UNSAFE.search(text) else text
    return "".join(_escape(c) if c < " " or c > "~" and _is_unsafe(c) else c for c in text)


def _is_unsafe(char: str) -> bool:
    return char == "\x7f" or unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# A spec with thousands of mistakes (often one mistake, repeated by a generator) prints the first
# MAX_ERRORS_SHOWN and a count; expansion stops looking after MAX_ERRORS_COLLECTED distinct ones,
# which keeps `check` on a 20,000-error spec well under a second of work after parsing.
MAX_ERRORS_SHOWN = 50
MAX_ERRORS_COLLECTED = 500


class NetspecError(Exception):
    """A problem with what the user gave netspec, as one or more diagnostics; exit code 2.

    Raised by kind (`SpecError`, `DataError`, `ModelFileError`, `RunError`, `ExportError`,
    `OptionError`) so a caller can tell a bad spec from a bad dataset; the CLI formats all of
    them in one place (netspec/cli.py) the same way.
    """

    kind = "input"
    exit_code = 2

    def __init__(self, diagnostics: Iterable[Diagnostic], partial_report=None):
        self.diagnostics = _dedupe(diagnostics)
        # Shape inference keeps the table up to the failing layer so the CLI can print it.
        self.partial_report = partial_report
        super().__init__(self.format())

    @classmethod
    def at(cls, mark: Mark | None, where: str, message: str, hint: str | None = None):
        return cls([Diagnostic(mark, where, message, hint)])

    def format(self) -> str:
        lines = [d.format() for d in self.diagnostics[:MAX_ERRORS_SHOWN]]
        hidden = len(self.diagnostics) - MAX_ERRORS_SHOWN
        if hidden > 0:
            more = f"... and {hidden:,} more error{'s' if hidden != 1 else ''}"
            if len(self.diagnostics) >= MAX_ERRORS_COLLECTED:
                more += f" (checking stopped after {MAX_ERRORS_COLLECTED:,}; fix these and run it again)"
            lines.append(more)
        return "\n".join(lines)


class SpecError(NetspecError):
    """A problem in a spec file (or in a `--set`/`--input` override of it)."""

    kind = "spec"


class DataError(NetspecError):
    """A dataset that cannot be used as given (missing, damaged, refused, or not matching the spec)."""

    kind = "data"


class ModelFileError(NetspecError):
    """A model file (ONNX, weights) that cannot be read or does not describe itself correctly."""

    kind = "model file"


class RunError(NetspecError):
    """A run directory that cannot be used: not a run, locked by another process, damaged."""

    kind = "run"


class ExportError(NetspecError):
    """An export that cannot be written, or whose file did not verify (no file is left)."""

    kind = "export"


class OptionError(NetspecError):
    """A command-line option's value that netspec refuses (named by the option)."""

    kind = "option"


class ShapeError(ValueError):
    """Raised by a layer's shape rule; carries no location (the walker adds it)."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message)


def _dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    # A block used five times reports the same broken line once.
    seen: dict[tuple, Diagnostic] = {}
    for d in diagnostics:
        seen.setdefault((d.mark, d.message), d)
    return list(seen.values())


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """'did you mean `conv`?' for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


class RunStopped(Exception):
    """A run that ended early for a reason the user must see (divergence, Ctrl-C, SIGTERM).

    Not a spec error: the CLI prints the message (already saying what was kept on disk) and
    exits with `exit_code`.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
