"""Summaries of what a symbolic input (`input: [3, H, W]`) must satisfy.

Every shape rule is monotone in the input size, so "this size must stay ≥ 1" becomes a
minimum per symbol, found by a galloping binary search (steps grow with log of the answer,
never with the size of a stride). Merges of differently-rounded paths only agree for some
sizes: those repeat with the period of the floors involved (the lcm of their divisors), so
checking one period gives the allowed residues — when the period is small enough to walk.
A longer period is reported as not decided, with the reason, instead of being walked.
"""

from __future__ import annotations

from netspec.errors import ShapeError
from netspec.layers.base import Constraint
from netspec.shapes import symbolic as sym

# Residues an equality is checked at (twice: one period from the minimum, and one eight periods
# later). Strides multiply into periods: 4,096 covers every mix of strides up to 64 a real
# network uses; a stride of 10^12 gives a period no walk could cover, so it is not walked.
MAX_PERIOD = 4096
# Evaluations of symbolic sizes across all equalities of one spec, so a spec with thousands of
# merges stays within a fixed time (~0.3 s); equalities past it are reported as not decided.
MAX_EQUALITY_EVALUATIONS = 200_000


def summarize(constraints: list[Constraint], symbols: list[str], rows) -> list[str]:
    if not symbols:
        return []
    constraints = _distinct(constraints)
    minimum = minimum_sizes(constraints, symbols)
    lines = [f"{s} ≥ {minimum[s]}" for s in symbols if s in minimum]
    budget = [MAX_EQUALITY_EVALUATIONS]
    names = _row_names(rows)
    lines += [line for c in constraints if c.relation == "==" for line in [_equality(c, minimum, budget, names)]
              if line]
    lines += _linear_notes(rows, symbols, minimum)
    return lines


def _row_names(rows) -> dict[int, str]:
    """Each origin's first table row, as the lines name it: `row 5 concat, net.yaml:6:5`. A
    container shares its origin with its merge row (the `add` or `concat` the condition is about),
    which is named rather than the container's own row."""
    names: dict[int, str] = {}
    for leaves in (True, False):
        for row in rows:
            if row.leaf == leaves and id(row.origin) not in names:
                mark = row.origin.mark
                names[id(row.origin)] = row_name(row) + (f", {mark}" if mark else "")
    return names


def row_name(row) -> str:
    """How constraint lines name a row of the `check` table: `row 11 linear`."""
    return f"row {row.index} {row.kind}"


def _where(c: Constraint, names: dict[int, str]) -> str:
    if c.origin is None:
        return ""
    return names.get(id(c.origin), c.origin.path)


def _distinct(constraints: list[Constraint]) -> list[Constraint]:
    """Each condition once (the first place that needs it): a block used 1,000 times repeats them."""
    seen: dict[tuple, Constraint] = {}
    for c in constraints:
        seen.setdefault((c.relation, c.value, c.bound), c)
    return list(seen.values())


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
            error = ShapeError(f"no input size up to {sym.MAX_SEARCHED_SIZE:,} satisfies it: {c.reason}")
            error.origin = c.origin
            raise error
        minimum[name] = max(minimum[name], least)
    return minimum


def _equality(c: Constraint, minimum: dict[str, int], budget: list[int], names: dict[int, str]) -> str | None:
    free = sym.symbols(c.value) | sym.symbols(c.bound)
    where = _where(c, names)
    if len(free) != 1:
        return f"{sym.fmt(c.value)} = {sym.fmt(c.bound)} ({where})"
    (name,) = free
    period = sym.period_within(c.value, c.bound, limit=MAX_PERIOD)
    start = minimum.get(name, 1)
    if period is None:
        return _undecided(c, name, start, f"the sizes where it holds repeat with a period over {MAX_PERIOD:,}",
                          where)
    if budget[0] < 4 * period:
        return _undecided(c, name, start, f"check's budget of {MAX_EQUALITY_EVALUATIONS:,} evaluations is spent",
                          where)
    budget[0] -= 4 * period

    def agrees(n: int) -> bool:
        return sym.evaluate(c.value, {name: n}) == sym.evaluate(c.bound, {name: n})

    holds = [n for n in range(start, start + period) if agrees(n)]
    later = [n for n in range(start + 8 * period, start + 9 * period) if agrees(n)]
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


def _undecided(c: Constraint, name: str, start: int, why: str, where: str) -> str:
    """An honest note for an equality check cannot settle in bounded time; the table still prints."""
    at = {name: start}
    verdict = "holds" if sym.evaluate(c.value, at) == sym.evaluate(c.bound, at) else "fails"
    return (f"not decided: {sym.fmt(c.value)} = {sym.fmt(c.bound)} ({c.reason} otherwise; {where}): {why}; "
            f"it {verdict} at {name} = {start}")


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
        sizes = ", ".join(f"{s} ∈ {lo:,}..{hi:,}" for s in free for lo, hi in [_constant_run(features, example, s)])
        at = f" ({row.origin.mark})" if row.origin.mark else ""
        notes.append(f"{row_name(row)}{at}: in_features = {sym.fmt(features)} depends on "
                     f"{', '.join(free)}; its weights fit one size class (e.g. {sizes} gives {value:,})")
    return notes


def _constant_run(value, at: dict[str, int], name: str) -> tuple[int, int]:
    """The sizes of `name` from `at[name]` (the least valid one; others fixed) up to the last that
    gives the same value. A flattened size never shrinks as the input grows, so the run ends where
    the value first exceeds it: a binary search, however long the run (a stride of 10^12 makes it
    10^12 sizes long)."""
    target = sym.evaluate(value, at)
    start = at[name]
    first_larger = sym.smallest_satisfying(lambda n: sym.evaluate(value, {**at, name: n}) > target, start)
    if first_larger is None:
        return start, sym.MAX_SEARCHED_SIZE
    return start, first_larger - 1
