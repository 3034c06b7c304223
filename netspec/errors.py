"""User-facing errors: one GCC-style line per problem, plus an optional hint.

Library code raises `SpecError`; the CLI formats it in one place (`cli.py`) and exits 2.
A layer's shape rule raises a plain `ShapeError` without any location: the graph walker
(`netspec.infer`) adds `file:line:col` and the macro chain once, as ONNX shape inference does.
"""

from __future__ import annotations

import difflib
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
        prefix = f"{self.mark}: " if self.mark else ""
        where = f"{self.where}: " if self.where else ""
        text = f"{prefix}error: {where}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(Exception):
    """One or more problems in a spec (or in CLI input); exit code 2."""

    def __init__(self, diagnostics: Iterable[Diagnostic], partial_report=None):
        self.diagnostics = _dedupe(diagnostics)
        # Shape inference keeps the table up to the failing layer so the CLI can print it.
        self.partial_report = partial_report
        super().__init__(self.format())

    @classmethod
    def at(cls, mark: Mark | None, where: str, message: str, hint: str | None = None) -> "SpecError":
        return cls([Diagnostic(mark, where, message, hint)])

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


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
