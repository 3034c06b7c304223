"""Summaries of what a symbolic input (`input: [3, H, W]`) must satisfy.

Every shape rule is monotone in the input size, so "this size must stay ≥ 1" becomes a
minimum per symbol, found by binary search. Merges of differently-rounded paths only agree
for some sizes: those repeat with the period of the floors involved (the lcm of their
divisors), so checking one period gives the allowed residues.
"""

from __future__ import annotations

import math

from netspec import symbolic as sym
from netspec.errors import ShapeError
from netspec.layers.base import Constraint


def summarize(constraints: list[Constraint], symbols: list[str], rows) -> list[str]:
    if not symbols:
        return []
    minimum = minimum_sizes(constraints, symbols)
    lines = [f"{s} ≥ {minimum[s]}" for s in symbols if s in minimum]
    lines += [line for c in constraints if c.relation == "==" for line in [_equality(c, minimum)] if line]
    lines += _linear_notes(rows, symbols, minimum)
    return lines


def minimum_sizes(constraints: list[Constraint], symbols: list[str]) -> dict[str, int]:
    """The least value of each symbol meeting every single-symbol `≥` condition."""
    minimum = {s: 1 for s in symbols}
    for c in constraints:
        if c.relation != ">=":
            continue
        free = sym.symbols(c.value)
        if len(free) != 1:
            continue
        (name,) = free
        least = sym.smallest_satisfying(lambda n: sym.evaluate(c.value, {name: n}) >= c.bound, minimum[name])
        if least is None:
            error = ShapeError(f"no input size satisfies it: {c.reason}")
            error.origin = c.origin
            raise error
        minimum[name] = max(minimum[name], least)
    return minimum


def _equality(c: Constraint, minimum: dict[str, int]) -> str | None:
    free = sym.symbols(c.value) | sym.symbols(c.bound)
    where = c.origin.path if c.origin else ""
    if len(free) != 1:
        return f"{sym.fmt(c.value)} = {sym.fmt(c.bound)} ({where})"
    (name,) = free
    period = math.lcm(sym.period(c.value), sym.period(c.bound))
    start = minimum.get(name, 1)
    holds = [n for n in range(start, start + period)
             if sym.evaluate(c.value, {name: n}) == sym.evaluate(c.bound, {name: n})]
    later = [n for n in range(start + 8 * period, start + 9 * period)
             if sym.evaluate(c.value, {name: n}) == sym.evaluate(c.bound, {name: n})]
    if len(holds) == period and len(later) == period:
        return None
    if not holds and not later:
        error = ShapeError(f"{c.reason}: {sym.fmt(c.value)} vs {sym.fmt(c.bound)} for every {name}")
        error.origin = c.origin
        raise error
    residues = sorted({n % period for n in holds})
    if [n % period for n in later] != [n % period for n in holds]:
        return f"{name} ∈ {{{', '.join(map(str, holds))}}} ({c.reason} otherwise; {where})"
    allowed = " or ".join(str(r) for r in residues)
    return f"{name} mod {period} = {allowed} ({c.reason} otherwise; {where})"


def _linear_notes(rows, symbols: list[str], minimum: dict[str, int]) -> list[str]:
    """A `linear` fed by a size-dependent vector has weights for one size class only."""
    notes = []
    for row in rows:
        if row.kind != "linear" or not row.inputs or isinstance(row.inputs[0][0], int):
            continue
        features = row.inputs[0][0]
        free = sorted(sym.symbols(features))
        example = {s: minimum.get(s, 1) for s in free}
        value = sym.evaluate(features, example)
        sizes = ", ".join(f"{s} ∈ {lo}..{hi}" for s in free for lo, hi in [_constant_run(features, example, s)])
        notes.append(f"{row.origin.path} linear: in_features = {sym.fmt(features)} depends on "
                     f"{', '.join(free)}; its weights fit one size class (e.g. {sizes} gives {value:,})")
    return notes


def _constant_run(value, at: dict[str, int], name: str) -> tuple[int, int]:
    """The sizes of `name` around `at[name]` (others fixed) that give the same value."""
    target = sym.evaluate(value, at)
    limit = sym.period(value)

    def same(n: int) -> bool:
        return n >= 1 and sym.evaluate(value, {**at, name: n}) == target

    lo = hi = at[name]
    while lo - 1 >= at[name] - limit and same(lo - 1):
        lo -= 1
    while hi + 1 <= at[name] + limit and same(hi + 1):
        hi += 1
    return lo, hi
