"""Symbolic sizes: canonical floors must agree with integer arithmetic at every size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.shapes import symbolic as sym
from netspec.shapes.symbolic import Expr

H = Expr.symbol("H")

windows = st.tuples(st.integers(1, 7), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3), st.booleans())


def direct(size: int, ops) -> int:
    for kernel, stride, pad, dilation, ceil in ops:
        numerator = size + 2 * pad - dilation * (kernel - 1) - 1
        size = (-(-numerator // stride) if ceil else numerator // stride) + 1
    return size


def symbolic(ops):
    size = H
    for kernel, stride, pad, dilation, ceil in ops:
        numerator = sym.sub(sym.add(size, 2 * pad), dilation * (kernel - 1) + 1)
        size = sym.add(sym.ceildiv(numerator, stride) if ceil else sym.floordiv(numerator, stride), 1)
    return size


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(windows, min_size=1, max_size=5), st.integers(1, 400))
def test_stacked_windows_evaluate_like_integer_arithmetic(ops, size):
    assert sym.evaluate(symbolic(ops), {"H": size}) == direct(size, ops)


def test_floor_canonical_forms():
    assert sym.fmt(sym.floordiv(sym.floordiv(H, 2), 2)) == "⌊H/4⌋"
    assert sym.fmt(sym.add(sym.floordiv(sym.sub(H, 2), 2), 1)) == "⌊H/2⌋"
    assert sym.floordiv(sym.add(sym.scale(H, 4), 8), 4) == sym.add(H, 2)
    assert sym.ceildiv(H, 2) == sym.floordiv(sym.add(H, 1), 2)
    assert sym.floordiv(sym.scale(H, 2), 4) == sym.floordiv(H, 2)


def test_product_prints_factored_but_compares_expanded():
    a = sym.sub(sym.floordiv(H, 4), 2)
    p = sym.product([16, a, a])
    assert sym.fmt(p) == "16·(⌊H/4⌋ − 2)·(⌊H/4⌋ − 2)"
    assert p == sym.mul(16, sym.mul(a, a))
    assert sym.evaluate(p, {"H": 28}) == 16 * 25


def test_smallest_satisfying():
    assert sym.smallest_satisfying(lambda n: n * n >= 1000) == 32
    assert sym.smallest_satisfying(lambda n: False, limit=1 << 10) is None
