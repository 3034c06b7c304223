"""Integer expressions in the input's symbolic sizes (`input: [3, H, W]`).

A size is either a plain `int` or an `Expr`: a polynomial with integer coefficients over
atoms, where an atom is a symbol (`H`) or a floor division `⌊p/d⌋` of a polynomial by a
positive integer. Every conv/pool output-size rule is `⌊(x + a)/s⌋ + b`, so this is closed
under all the shape rules netspec has, and products (flatten, MACs, params) stay polynomials.

Floors are kept canonical so equal sizes print and compare equal:
  ⌊(d·P + R)/d⌋ = P + ⌊R/d⌋  and  ⌊(⌊X/e⌋ + r)/d⌋ = ⌊(X + r·e)/(e·d)⌋  (integers, e, d > 0).
"""

from __future__ import annotations

import math
from functools import reduce
from typing import Iterable, Union

Dim = Union[int, "Expr"]
_MINUS = "\u2212"


class Atom:
    __slots__ = ("name", "inner", "divisor", "_key")

    def __init__(self, name: str | None = None, inner: "Expr | None" = None, divisor: int = 1):
        self.name, self.inner, self.divisor = name, inner, divisor
        self._key = name if name is not None else f"\uffff⌊{inner.text()}/{divisor}⌋"

    def __eq__(self, other):
        return isinstance(other, Atom) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __lt__(self, other):
        return self._key < other._key

    def evaluate(self, env: dict[str, int]) -> int:
        if self.name is not None:
            return env[self.name]
        return evaluate(self.inner, env) // self.divisor

    def symbols(self) -> set[str]:
        return {self.name} if self.name is not None else self.inner.symbols()

    def text(self) -> str:
        if self.name is not None:
            return self.name
        inner = self.inner.text()
        if len(self.inner.terms) > 1:
            inner = f"({inner})"
        return f"⌊{inner}/{self.divisor}⌋"


class Expr:
    """An immutable canonical polynomial: {monomial (sorted atom tuple): coefficient}."""

    __slots__ = ("terms", "display")

    def __init__(self, terms: dict[tuple, int], display: str | None = None):
        self.terms = {m: c for m, c in terms.items() if c != 0}
        self.display = display  # a factored spelling for printing; ignored by equality

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> "Expr":
        return Expr({(Atom(name=name),): 1})

    @staticmethod
    def lift(value: Dim) -> "Expr":
        return value if isinstance(value, Expr) else Expr({(): value})

    def const(self) -> int:
        return self.terms.get((), 0)

    def __eq__(self, other):
        other = Expr.lift(other) if isinstance(other, int) else other
        return isinstance(other, Expr) and self.terms == other.terms

    def __hash__(self):
        return hash(frozenset(self.terms.items()))

    def symbols(self) -> set[str]:
        return set().union(*(a.symbols() for m in self.terms for a in m)) if self.terms else set()

    def text(self) -> str:
        if self.display is not None:
            return self.display
        if not self.terms:
            return "0"
        parts = []
        for monomial, coef in sorted(self.terms.items(), key=lambda t: (len(t[0]) == 0, t[0])):
            body = "·".join(a.text() for a in monomial)
            if not body:
                body = str(abs(coef))
            elif abs(coef) != 1:
                body = f"{abs(coef)}·{body}"
            sign = _MINUS if coef < 0 else "+"
            parts.append((sign, body))
        first_sign, first = parts[0]
        out = (_MINUS if first_sign == _MINUS else "") + first
        for sign, body in parts[1:]:
            out += f" {sign} {body}"
        return out

    def __repr__(self):
        return f"Expr({self.text()})"


def simplify(expr: Expr) -> Dim:
    return expr.const() if set(expr.terms) <= {()} else expr


def labelled(value: Dim, text: str) -> Dim:
    """The same value, printed as `text` (a factored spelling the user can read)."""
    return Expr(value.terms, text) if isinstance(value, Expr) else value


def add(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    terms = dict(Expr.lift(a).terms)
    for m, c in Expr.lift(b).terms.items():
        terms[m] = terms.get(m, 0) + c
    return simplify(Expr(terms))


def scale(a: Dim, k: int) -> Dim:
    if isinstance(a, int):
        return a * k
    return simplify(Expr({m: c * k for m, c in a.terms.items()}))


def sub(a: Dim, b: Dim) -> Dim:
    return add(a, scale(b, -1))


def mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    terms: dict[tuple, int] = {}
    for ma, ca in Expr.lift(a).terms.items():
        for mb, cb in Expr.lift(b).terms.items():
            m = tuple(sorted(ma + mb))
            terms[m] = terms.get(m, 0) + ca * cb
    return simplify(Expr(terms))


def product(values: Iterable[Dim]) -> Dim:
    """The product, printed factored (`16·(⌊H/4⌋ − 2)·(⌊W/4⌋ − 2)`) when symbolic."""
    values = list(values)
    result = reduce(mul, values, 1)
    if isinstance(result, Expr) and len(values) > 1:
        constant = math.prod(v for v in values if isinstance(v, int))
        factors = [fmt(v, grouped=True) for v in values if not isinstance(v, int)]
        if constant != 1:
            factors.insert(0, str(constant))
        result = Expr(result.terms, "·".join(factors))
    return result


def total(values: Iterable[Dim]) -> Dim:
    return reduce(add, values, 0)


def floordiv(a: Dim, d: int) -> Dim:
    """⌊a/d⌋ for a positive integer d, in canonical form."""
    if d <= 0:
        raise ValueError("divisor must be positive")
    if isinstance(a, int):
        return a // d
    if d == 1:
        return a
    whole, rest = {}, {}
    for m, c in a.terms.items():
        if m == ():
            continue
        q, r = divmod(c, d)
        if q:
            whole[m] = q
        if r:
            rest[m] = r
    q0, r0 = divmod(a.const(), d)
    whole[()] = q0
    outside = simplify(Expr(whole))
    if not rest:
        return outside
    g = math.gcd(d, r0, *rest.values())
    if g > 1:
        rest = {m: c // g for m, c in rest.items()}
        r0, d = r0 // g, d // g
    nested = _merge_nested_floor(rest, r0, d)
    return add(outside, nested)


def _merge_nested_floor(rest: dict[tuple, int], r0: int, d: int) -> Dim:
    if len(rest) == 1:
        (monomial, coef), = rest.items()
        if coef == 1 and len(monomial) == 1 and monomial[0].name is None:
            atom = monomial[0]
            return floordiv(add(atom.inner, r0 * atom.divisor), atom.divisor * d)
    if d == 1:
        return simplify(Expr({**rest, (): r0}))
    inner = Expr({**rest, (): r0})
    return Expr({(Atom(inner=inner, divisor=d),): 1})


def ceildiv(a: Dim, d: int) -> Dim:
    return floordiv(add(a, d - 1), d)


def evaluate(value: Dim, env: dict[str, int]) -> int:
    if isinstance(value, int):
        return value
    out = 0
    for monomial, coef in value.terms.items():
        out += coef * math.prod(a.evaluate(env) for a in monomial)
    return out


def symbols(value: Dim) -> set[str]:
    return set() if isinstance(value, int) else value.symbols()


def fmt(value: Dim, grouped: bool = False) -> str:
    """Text of a size; `grouped` wraps compound expressions in parentheses."""
    if isinstance(value, int):
        return str(value)
    text = value.text()
    if grouped and (len(value.terms) > 1 or value.display or next(iter(value.terms.values())) < 0):
        return f"({text})"
    return text


def period_within(a: Dim, b: Dim, limit: int) -> int | None:
    """A period P with a(n + P) − a(n) and b(n + P) − b(n) constant, or None when it exceeds `limit`.

    An atom ⌊X/d⌋ whose inner X has period p repeats after d·p; the lcm is taken one atom at a
    time and abandoned past `limit`, so huge strides never build a huge number."""
    result = 1
    for value in (a, b):
        if isinstance(value, int):
            continue
        for monomial in value.terms:
            for atom in monomial:
                result = _lcm_within(result, _atom_period(atom, limit), limit)
                if result is None:
                    return None
    return result


def _atom_period(atom: Atom, limit: int) -> int | None:
    if atom.name is not None:
        return 1
    inner = period_within(atom.inner, 0, limit)
    return None if inner is None or inner * atom.divisor > limit else inner * atom.divisor


def _lcm_within(a: int, b: int | None, limit: int) -> int | None:
    if b is None:
        return None
    value = math.lcm(a, b)
    return value if value <= limit else None


def magnitude(value: Dim) -> int:
    """The largest absolute number written in a size: its coefficients, constants and divisors."""
    if isinstance(value, int):
        return abs(value)
    largest = 0
    for monomial, coef in value.terms.items():
        largest = max(largest, abs(coef))
        for atom in monomial:
            if atom.name is None:
                largest = max(largest, atom.divisor, magnitude(atom.inner))
    return largest


# Input sizes are searched up to here: a size or count beyond 2^62 is "too large" everywhere in
# netspec, and a search that doubles from 1 reaches it in 62 steps.
MAX_SEARCHED_SIZE = 1 << 62


def smallest_satisfying(predicate, start: int = 1, limit: int = MAX_SEARCHED_SIZE) -> int | None:
    """The least integer n >= start with predicate(n), assuming predicate is monotone.

    Gallops from `start` (start + 1, + 2, + 4, ...) and then bisects the last step: about
    2·log2(answer − start) calls, so a long chain of slightly stricter conditions stays cheap."""
    if predicate(start):
        return start
    lo, step = start, 1
    while not predicate(start + step):
        lo = start + step
        if lo > limit:
            return None
        step *= 2
    hi = start + step
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return hi
