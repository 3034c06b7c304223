"""Spec-language features: graphs, macros, blocks, vars, include, repeat, trainable."""

from __future__ import annotations

import pytest

import netspec
from netspec.errors import SpecError


def check(text: str, **kwargs):
    return netspec.check(netspec.loads(text, "t.yaml", **kwargs))


def rows(report, kind):
    return [r for r in report.rows if r.kind == kind]


def test_named_graph_with_concat_and_add():
    report = check("""
name: g
input: [3, 16, 16]
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
    name: stem
  - conv: {out: 4, kernel: 1}
    name: a
  - conv: {out: 4, kernel: 3, padding: 1}
    from: stem
    name: b
  - concat:
    from: [a, b]
    name: cat
  - add:
    from: [stem, cat]
""")
    assert report.output == (8, 16, 16)
    assert rows(report, "concat")[0].output == (8, 16, 16)


def test_add_broadcasts_like_torch():
    report = check("""
name: gate
input: [8, 10, 10]
layers:
  - global_avgpool
  - sigmoid
    name: gate
  - mul:
    from: [input, gate]
""".replace("  - sigmoid\n    name: gate", "  - sigmoid:\n    name: gate"))
    assert report.output == (8, 10, 10)


def test_residual_auto_adds_torchvision_downsample_only_when_needed():
    report = check("""
name: r
input: [16, 32, 32]
layers:
  - residual:
      body:
        - conv: {out: 32, kernel: 3, stride: 2, padding: 1, bias: false}
        - bn
  - residual:
      body: [conv: {out: 32, kernel: 3, padding: 1}]
""")
    convs = rows(report, "conv")
    projection = [r for r in convs if "shortcut (auto)" in r.origin.path]
    assert len(projection) == 1
    assert projection[0].label == "conv(out=32, kernel=1, stride=2, bias=False)"
    assert projection[0].params == 16 * 32
    assert report.output == (32, 16, 16)


def test_residual_identity_shape_mismatch_is_an_error():
    with pytest.raises(SpecError, match="body gives 32×16×16 but the shortcut gives 16×32×32"):
        check("""
name: r
input: [16, 32, 32]
layers:
  - residual:
      body: [conv: {out: 32, kernel: 3, stride: 2, padding: 1}]
      shortcut: identity
""")


def test_parallel_concat_adds_channels():
    report = check("""
name: p
input: [3, 8, 8]
layers:
  - parallel:
      paths:
        - [conv: {out: 4, kernel: 1}]
        - [conv: {out: 6, kernel: 3, padding: 1}, relu]
""")
    assert report.output == (10, 8, 8)


def test_blocks_with_defaults_expressions_repeat_and_short_form():
    report = check("""
name: b
input: [3, 32, 32]
vars: {width: 8}
blocks:
  stage:
    params: {out: required, k: 3}
    layers:
      - conv: {out: "${out * 2}", kernel: $k, padding: "${k // 2}"}
      - relu
layers:
  - stage: $width
    repeat: 3
  - stage: {out: 4, k: 5}
""")
    assert [r.output for r in rows(report, "conv")] == [(16, 32, 32)] * 3 + [(8, 32, 32)]
    assert report.rows[0].kind == "stage×3" and not report.rows[0].leaf


def test_vars_and_set_override():
    text = "name: v\ninput: [3, 8, 8]\nvars: {c: 4, d: '${c * 2}'}\nlayers:\n  - conv: {out: $d, kernel: 1}\n"
    assert check(text).output == (8, 8, 8)
    assert check(text, overrides=["c=5"]).output == (10, 8, 8)


def test_include_imports_blocks_relative_to_the_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "common.yaml").write_text(
        "blocks:\n  cbr:\n    params: {out: required}\n"
        "    layers: [conv: {out: $out, kernel: 3, padding: 1}, bn, relu]\n")
    spec = tmp_path / "net.yaml"
    spec.write_text("name: n\ninput: [3, 8, 8]\ninclude: [lib/common.yaml]\nlayers:\n  - cbr: 16\n")
    report = netspec.check(netspec.load(spec))
    assert report.output == (16, 8, 8)


def test_trainable_false_counts_as_non_trainable():
    report = check("""
name: f
input: [3, 8, 8]
layers:
  - conv: {out: 4, kernel: 3}
    trainable: false
  - flatten
  - linear: 2
""")
    assert report.non_trainable_params == 4 * 3 * 9 + 4
    assert report.trainable_params == 4 * 6 * 6 * 2 + 2


def test_ceil_mode_drops_a_window_starting_in_padding_like_torch():
    # torch: MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5×5 → 3×3, not 4×4
    report = check("name: c\ninput: [1, 5, 5]\nlayers:\n"
                   "  - maxpool: {kernel: 2, stride: 2, padding: 1, ceil_mode: true}\n")
    assert report.output == (1, 3, 3)
    assert "last window starts in the padding" in report.rows[0].formula


def test_dilated_conv_formula():
    report = check("name: d\ninput: [1, 28, 28]\nlayers:\n  - conv: {out: 2, kernel: 3, dilation: 2}\n")
    assert report.rows[0].formula == "H = ⌊(28 + 2·0 − 2·(3 − 1) − 1)/1⌋ + 1 = 24 (W same)"


def test_all_schema_errors_are_reported_at_once():
    with pytest.raises(SpecError) as info:
        check("name: e\ninput: [1, 8, 8]\nlayers:\n  - conv: {out: 0, kernel: 3}\n"
              "  - relux\n  - linear: {out: 2, bais: true}\n")
    lines = [d.mark.line for d in info.value.diagnostics]
    assert lines == [4, 5, 6]
