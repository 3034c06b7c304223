"""`check`'s time and memory budgets (issue 8): text and expression results, expansion,
symbolic constraints, large valid specs and the number of errors printed.

Timed assertions are only the issue's explicit bounds (90,000 layers < 3 s, stride-10^12
symbolic specs < 1 s, 20,000 errors < 2 s), each measured once; everything else asserts
behaviour: which error, where, and how much work was done before it.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netspec
from netspec.errors import MAX_ERRORS_COLLECTED, MAX_ERRORS_SHOWN
from netspec.lang import expand
from netspec.lang.exprs import MAX_MAGNITUDE, MAX_TEXT_CHARS
from netspec.shapes import symbolic as sym
from netspec.shapes.constraints import MAX_PERIOD
from tests.conftest import ROOT

STRIDE = 10**12

# Runs `netspec check` in a child, timing import + check inside it (interpreter start-up is
# not netspec's), with stdout to a pipe as in `netspec check spec | less`. CPU time, not wall
# time: the work done, unaffected by another suite sharing the machine's two cores.
_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
start = time.process_time()
from netspec import cli
code = cli.main(sys.argv[1:])
sys.stderr.write(f"\\nELAPSED {{time.process_time() - start:.3f}}\\n")
sys.exit(code)
"""


def run_check(path: Path, *args: str) -> tuple[int, str, str, float]:
    child = _CHILD.format(root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", child, "check", str(path), *args], capture_output=True,
                          text=True, timeout=60, cwd=path.parent)
    err, _, elapsed = done.stderr.rpartition("\nELAPSED ")
    return done.returncode, done.stdout, err, float(elapsed)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> netspec.SpecError:
    with pytest.raises(netspec.SpecError) as info:
        netspec.check(netspec.load(write(tmp_path, text)))
    return info.value


# -- text interpolation ------------------------------------------------------------------------

def test_interpolation_bomb_stops_at_the_var_that_crosses_the_limit(tmp_path):
    chain = "\n".join(f'  x{i}: "{" ".join([f"$x{i - 1}"] * 10)}"' for i in range(1, 12))
    error = load_error(tmp_path, f"name: t\ninput: [3, 8, 8]\nvars:\n  x0: abcdefghij\n{chain}\nlayers: [relu]\n")
    first = error.diagnostics[0]
    # x1 is 109 characters, x2 1,099, x3 10,999: x3 (line 7, value at column 7) is the first too large
    assert (first.mark.line, first.mark.col) == (7, 7)
    assert "too large" in first.message and f"{MAX_TEXT_CHARS:,}" in first.message


def test_interpolated_text_up_to_the_limit_is_kept(tmp_path):
    half = "a" * (MAX_TEXT_CHARS // 2)
    spec = netspec.load(write(tmp_path, f'name: t\ninput: [3, 8, 8]\nvars:\n  h: {half}\n  full: "$h$h"\n'
                                        "layers: [relu]\n"))
    assert spec.vars["full"] == half * 2
    error = load_error(tmp_path, f'name: t\ninput: [3, 8, 8]\nvars:\n  h: {half}\n  over: "$h$h!"\nlayers: [relu]\n')
    assert "too large" in error.diagnostics[0].message


def test_block_parameters_repeating_text_stop_inside_the_blocks(tmp_path):
    blocks = "\n".join(f"  b{i}:\n    params: {{p: required}}\n    layers:\n      - b{i + 1}: {{p: \"{'$p' * 10}\"}}"
                       for i in range(1, 6))
    error = load_error(tmp_path, f"name: t\ninput: [3, 8, 8]\nblocks:\n{blocks}\n  b6:\n    params: {{p: required}}\n"
                                 "    layers: [relu]\nlayers:\n  - b1: {p: abcdefghij}\n")
    assert "too large" in error.diagnostics[0].message
    # b4 receives exactly 10^4 characters (allowed) and would pass 10^5 to b5
    assert error.diagnostics[0].where.endswith("b4[0] b5")


def test_a_list_var_is_never_written_into_text(tmp_path):
    # l3 is 10^4 items through shared references: cheap as a value, a bomb as text
    lists = "\n".join(f"  l{i}: [{', '.join([f'$l{i - 1}'] * 10)}]" for i in range(1, 4))
    error = load_error(tmp_path, f'name: t\ninput: [3, 8, 8]\nvars:\n  l0: [1]\n{lists}\n  s: "x$l3"\nlayers: [relu]\n')
    assert "only text and numbers can be written inside text" in error.diagnostics[0].message


# -- expression results ------------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    "${a * a}",             # the result
    "${a * a // a}",        # an intermediate, although the final value would fit
    "${a + a - a}",
    "${-a - a + a}",
    "${min(a * 4, 1)}",
])
def test_every_intermediate_of_an_expression_is_bounded(tmp_path, expr):
    error = load_error(tmp_path, f'name: t\ninput: [3, 8, 8]\nvars:\n  a: {MAX_MAGNITUDE // 2 + 1}\n  b: "{expr}"\n'
                                 "layers: [relu]\n")
    assert "too large" in error.diagnostics[0].message
    assert error.diagnostics[0].mark.line == 5


def test_results_at_the_bound_are_fine(tmp_path):
    spec = netspec.load(write(tmp_path, f'name: t\ninput: [3, 8, 8]\nvars:\n  a: {MAX_MAGNITUDE // 2}\n'
                                        '  b: "${a + a}"\n  c: "${a * 2 - a * 2}"\nlayers: [relu]\n'))
    assert spec.vars["b"] == MAX_MAGNITUDE and spec.vars["c"] == 0


def test_sizes_that_grow_past_the_bound_stop_at_that_layer(tmp_path):
    # each copy doubles the channels: copy 60 gives 3·2^60 (fits), copy 61 3·2^61 > 2^62
    error = load_error(tmp_path, "name: t\ninput: [3, 8, 8]\nblocks:\n  double:\n    layers:\n"
                                 "      - {relu: null, name: a}\n      - {concat: null, from: [a, a]}\n"
                                 "layers:\n  - double:\n    repeat: 100\n")
    assert "too large" in error.diagnostics[0].message
    assert "(copy 61)" in error.diagnostics[0].where and error.diagnostics[0].mark.line == 7


# -- expansion budgets -------------------------------------------------------------------------

def count_built_layers(monkeypatch) -> list[int]:
    built = [0]
    original = expand.Expander.layer

    def counting(self, *args):
        built[0] += 1
        return original(self, *args)

    monkeypatch.setattr(expand.Expander, "layer", counting)
    return built


def test_nested_repeats_are_counted_before_they_are_built(tmp_path, monkeypatch):
    built = count_built_layers(monkeypatch)
    error = load_error(tmp_path, "name: t\ninput: [3, 8, 8]\nblocks:\n  inner:\n    layers:\n      - relu:\n"
                                 "        repeat: 10000\n  middle:\n    layers:\n"
                                 "      - inner:\n        repeat: 10000\n"
                                 "layers:\n  - middle:\n    repeat: 10000\n")
    assert f"more than {expand.MAX_LAYERS:,} layers" in error.format()
    assert built[0] == 0  # 10^12 layers asked for; refused from the YAML alone


def test_repeat_of_a_built_block_is_counted_before_copying(tmp_path, monkeypatch):
    built = count_built_layers(monkeypatch)
    error = load_error(tmp_path, "name: t\ninput: [3, 8, 8]\nblocks:\n  inner:\n    params: {n: required}\n"
                                 "    layers:\n      - relu:\n        repeat: $n\n"
                                 "layers:\n  - inner: {n: 10000}\n    repeat: 10000\n")
    assert f"more than {expand.MAX_LAYERS:,} layers" in error.format()
    assert built[0] <= 10_000  # the first copy (its repeat is a parameter), then the count


def test_blocks_using_blocks_ten_times_each_are_refused_at_once(tmp_path, monkeypatch):
    built = count_built_layers(monkeypatch)
    blocks = "\n".join(f"  b{i}:\n    layers: [{', '.join([f'b{i + 1}'] * 10)}]" for i in range(1, 10))
    error = load_error(tmp_path, f"name: t\ninput: [3, 8, 8]\nblocks:\n{blocks}\n  b10:\n    layers: [relu]\n"
                                 "layers:\n  - b1\n")
    assert "more than 100,000 layers" in error.format() and "b1" in error.format()
    assert built[0] == 0


def test_a_failing_block_used_10_to_the_8_times_is_expanded_once(tmp_path, monkeypatch):
    calls = [0]
    original = expand.Expander.sequence

    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(expand.Expander, "sequence", counting)
    blocks = "\n".join(f"  b{i}:\n    layers: [{', '.join([f'{{b{i + 1}: {{p: [1, 2]}}}}'] * 10)}]\n"
                       "    params: {p: required}" for i in range(1, 9))
    error = load_error(tmp_path, f"name: t\ninput: [3, 8, 8]\nblocks:\n{blocks}\n  b9:\n    params: {{p: required}}\n"
                                 "    layers: [reluu]\nlayers:\n  - b1: {p: 0}\n")
    assert [d.message for d in error.diagnostics] == ["unknown layer type `reluu`"]
    assert calls[0] <= 100  # one expansion per level and failing use, not 10^8


def test_block_chains_deeper_than_the_nesting_limit_are_an_error(tmp_path):
    blocks = "\n".join(f"  b{i}:\n    layers: [b{i + 1}]" for i in range(1, 300))
    error = load_error(tmp_path, f"name: t\ninput: [3, 8, 8]\nblocks:\n{blocks}\n  b300:\n    layers: [relu]\n"
                                 "layers: [b1]\n")
    assert f"nest more than {expand.MAX_NESTING} levels deep" in error.format()


# -- symbolic constraints ----------------------------------------------------------------------

def checked_in_time(path: Path, seconds: float) -> netspec.Report:
    start = time.process_time()  # CPU time: see _CHILD
    report = netspec.check(netspec.load(path))
    elapsed = time.process_time() - start
    assert elapsed < seconds, f"check took {elapsed:.2f} s"
    return report


def test_stride_1e12_minimum_size_is_exact_and_fast(tmp_path):
    # pool: ⌊(H − 1)/10^12⌋ + 1; a 3×3 conv needs that ≥ 3, so H ≥ 2·10^12 + 1 (past 2^40)
    path = write(tmp_path, f"name: t\ninput: [3, H, W]\nlayers:\n  - maxpool: {{kernel: 1, stride: {STRIDE}}}\n"
                           "  - conv: {out: 4, kernel: 3}\n  - flatten\n  - linear: 10\n")
    report = checked_in_time(path, 1.0)
    assert f"H ≥ {2 * STRIDE + 1}" in report.constraints and f"W ≥ {2 * STRIDE + 1}" in report.constraints
    # in_features = 4·1·1 for H from 2·10^12 + 1 up to 3·10^12 (then the pool gives 4, the conv 2)
    note = next(c for c in report.constraints if "in_features" in c)
    assert f"H ∈ {2 * STRIDE + 1:,}..{3 * STRIDE:,}" in note and "gives 4" in note


@pytest.mark.parametrize("strides", [(STRIDE, STRIDE - 11), (STRIDE, STRIDE - 11, 999_999_937)])
def test_merges_with_huge_periods_are_reported_as_not_decided(tmp_path, strides):
    paths = "\n".join(f"        - [maxpool: {{kernel: 1, stride: {s}}}]" for s in strides)
    path = write(tmp_path, f"name: t\ninput: [3, H, W]\nlayers:\n  - parallel:\n      paths:\n{paths}\n"
                           "      merge: add\n")
    report = checked_in_time(path, 1.0)
    undecided = [c for c in report.constraints if c.startswith("not decided")]
    assert len(undecided) == 2 * (len(strides) - 1)  # per axis, each path against the first
    assert all(f"period over {MAX_PERIOD:,}" in c and "holds at" in c for c in undecided)


def test_stride_1e12_specs_end_to_end_under_a_second(tmp_path):
    path = write(tmp_path, f"name: t\ninput: [3, H, W]\nlayers:\n  - parallel:\n      paths:\n"
                           f"        - [maxpool: {{kernel: 1, stride: {STRIDE}}}]\n"
                           f"        - [maxpool: {{kernel: 1, stride: {STRIDE - 11}}}]\n"
                           "      merge: concat\n  - conv: {out: 4, kernel: 1}\n  - flatten\n  - linear: 10\n")
    code, out, err, elapsed = run_check(path)
    assert code == 0, err
    assert "not decided" in out and "in_features" in out
    assert elapsed < 1.0, f"netspec check took {elapsed:.2f} s"


def test_small_periods_are_still_decided_exactly(tmp_path):
    path = write(tmp_path, "name: t\ninput: [3, H, W]\nlayers:\n  - parallel:\n      paths:\n"
                           "        - [maxpool: 4]\n        - [maxpool: 6]\n      merge: add\n")
    report = netspec.check(netspec.load(path))
    # H ≥ 6 for the 6-wide pool; ⌊H/4⌋ = ⌊H/6⌋ = 1 for H = 6, 7, and never again (the period is 12)
    assert "H ≥ 6" in report.constraints
    line = next(c for c in report.constraints if c.startswith("H ∈"))
    assert line.startswith("H ∈ {6, 7} (")


def test_many_merges_share_one_evaluation_budget(tmp_path):
    merges = "\n".join(f"  - parallel:\n      paths: [[maxpool: {s}], [maxpool: {s + 1}]]\n      merge: add\n"
                       "    from: input" for s in range(20, 64))
    report = netspec.check(netspec.load(write(tmp_path, f"name: t\ninput: [3, H, W]\nlayers:\n{merges}\n")))
    assert any("budget" in c for c in report.constraints)
    assert any(c.startswith("H ∈") for c in report.constraints)  # the first ones were decided


def test_smallest_satisfying_needs_logarithmically_many_calls():
    calls = [0]

    def at_least(n: int) -> bool:
        calls[0] += 1
        return n >= 3 * STRIDE

    assert sym.smallest_satisfying(at_least) == 3 * STRIDE and calls[0] < 100
    calls[0] = 0
    assert sym.smallest_satisfying(lambda n: calls.__setitem__(0, calls[0] + 1) or False) is None
    assert calls[0] <= 64  # doubling up to 2^62


# -- large valid specs -------------------------------------------------------------------------

def relu_spec(tmp_path: Path, layers: int) -> Path:
    return write(tmp_path, "name: big\ninput: [3, 8, 8]\nlayers:\n" + "  - relu\n" * layers, "big.yaml")


def test_90000_layer_spec_checks_in_under_3_seconds(tmp_path):
    report = checked_in_time(relu_spec(tmp_path, 90_000), 3.0)
    assert len(report.rows) == 90_000 and report.output == (3, 8, 8)


def test_90000_layer_spec_end_to_end_under_3_seconds(tmp_path):
    code, out, err, elapsed = run_check(relu_spec(tmp_path, 90_000))
    assert code == 0, err
    assert out.count("\n") > 90_000 and "input 3×8×8 → output 3×8×8" in out
    assert elapsed < 3.0, f"netspec check took {elapsed:.2f} s"


def test_check_time_grows_linearly_with_the_number_of_layers(tmp_path):
    # The walk's own cost, without CPython's cyclic collector: a collection scans the whole
    # process heap (pytest's too), which is not what "linear" is about here.
    def cost(layers: int) -> float:
        spec = netspec.load(relu_spec(tmp_path, layers))
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            netspec.check(spec)
            return time.process_time() - start
        finally:
            gc.enable()

    cost(2_000)  # warm up
    small, large = min(cost(10_000) for _ in range(2)), min(cost(40_000) for _ in range(2))
    assert large < 4 * small * 2, (small, large)  # 4× the layers: a quadratic walk would take 16×


# -- error count -------------------------------------------------------------------------------

def test_20000_errors_print_the_first_ones_and_a_count(tmp_path):
    path = write(tmp_path, "name: t\ninput: [3, 8, 8]\nlayers:\n" + "  - reluu\n" * 20_000)
    code, out, err, elapsed = run_check(path)
    assert code == 2
    lines = err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == MAX_ERRORS_SHOWN and errors[0].startswith("spec.yaml:4:5: error:")
    assert lines[-1] == (f"... and {MAX_ERRORS_COLLECTED - MAX_ERRORS_SHOWN:,} more errors (checking stopped "
                         f"after {MAX_ERRORS_COLLECTED:,}; fix these and run it again)")
    assert elapsed < 2.0, f"netspec check took {elapsed:.2f} s"


def test_a_few_errors_are_all_printed_without_a_count(tmp_path):
    error = load_error(tmp_path, "name: t\ninput: [3, 8, 8]\nlayers:\n" + "  - reluu\n" * 60)
    assert len(error.diagnostics) == 60
    assert error.format().count(": error: ") == MAX_ERRORS_SHOWN
    assert error.format().endswith("... and 10 more errors")
