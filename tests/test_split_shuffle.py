"""`split` (addressable outputs `NAME.i`), `channel_shuffle`, and block parameters that are layer types.

Exactness is measured against torchvision's own ShuffleNetV2 pieces (`channel_shuffle`,
`InvertedResidual` for stride 1 and 2) with the weights copied over; errors are checked for
their file:line:col and hint.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import shufflenetv2 as tv

import netspec
from netspec.compile.compiler import build_with_report
from netspec.compile.weights import load_torchvision
from netspec.errors import SpecError

BLOCKS = """\
blocks:
  branch:                  # torchvision's branch2 (stride 1 or 2)
    params: {c: required, stride: 1}
    layers:
      - conv: {out: $c, kernel: 1, bias: false}
      - bn
      - relu
      - conv: {out: $c, kernel: 3, stride: $stride, padding: 1, groups: $c, bias: false}
      - bn
      - conv: {out: $c, kernel: 1, bias: false}
      - bn
      - relu
  shuffle_s1:
    params: {c: required}
    layers:
      - split: 2
        name: parts
      - branch: $c
        from: parts.1
        name: b2
      - concat:
        from: [parts.0, b2]
      - channel_shuffle: 2
  shuffle_s2:
    params: {inp: required, c: required}
    layers:
      - parallel:
          paths:
            - - conv: {out: $inp, kernel: 3, stride: 2, padding: 1, groups: $inp, bias: false}
              - bn
              - conv: {out: $c, kernel: 1, bias: false}
              - bn
              - relu
            - - branch: {c: $c, stride: 2}
      - channel_shuffle: 2
"""


def spec_text(layers: str, input_: str = "[24, 12, 12]") -> str:
    return f"name: t\ninput: {input_}\n{BLOCKS}layers:\n{layers}"


def compare(model: nn.Module, reference: nn.Module, shape) -> float:
    load_torchvision(model, reference)
    model.eval(), reference.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        return (model(x) - reference(x)).abs().max().item()


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("groups, channels", [(2, 8), (2, 116), (3, 12), (4, 8)])
def test_channel_shuffle_equals_torchvision(groups, channels):
    text = f"name: t\ninput: [{channels}, 5, 3]\nlayers:\n  - channel_shuffle: {groups}\n"
    model = netspec.build(netspec.loads(text))
    x = torch.randn(2, channels, 5, 3)
    assert torch.equal(model(x), tv.channel_shuffle(x, groups))


def test_split_parts_equal_torch_chunk():
    spec = netspec.loads("name: t\ninput: [12, 4, 4]\nlayers:\n  - split: 3\n    name: p\n"
                         "  - identity:\n    from: p.2\n    name: c\n  - concat:\n    from: [c, p.0, p.1]\n")
    model, report = build_with_report(spec)
    x = torch.randn(2, 12, 4, 4)
    a, b, c = x.chunk(3, dim=1)
    assert torch.equal(model(x), torch.cat([c, a, b], dim=1))
    split = report.rows[0]
    assert (split.params, split.macs, split.output) == (0, 0, (3, 4, 4, 4))
    assert split.formula == "C = 12 → 3 parts of 4×4×4 (.0, .1, .2)"


def test_inverted_residual_stride_1_is_exact():
    model, report = build_with_report(netspec.loads(spec_text("  - shuffle_s1: 12\n")))
    reference = tv.InvertedResidual(24, 24, 1)
    assert report.params == sum(p.numel() for p in reference.parameters())
    assert report.macs > 0 and report.rows[1].kind == "split" and report.rows[1].macs == 0
    assert compare(model, reference, (24, 12, 12)) == 0.0


def test_inverted_residual_stride_2_then_1_is_exact():
    layers = "  - shuffle_s2: {inp: 24, c: 16}\n  - shuffle_s1: 16\n  - shuffle_s1: 16\n"
    model, report = build_with_report(netspec.loads(spec_text(layers)))
    reference = nn.Sequential(tv.InvertedResidual(24, 32, 2), tv.InvertedResidual(32, 32, 1),
                              tv.InvertedResidual(32, 32, 1))
    assert report.params == sum(p.numel() for p in reference.parameters())
    assert report.output == (32, 6, 6)
    assert compare(model, reference, (24, 12, 12)) == 0.0


def test_the_graph_calls_the_split_once():
    model = netspec.build(netspec.loads(spec_text("  - shuffle_s1: 12\n")))
    block = model.shuffle_s1_0
    calls = [n for n in block.graph.nodes if n.op == "call_module" and n.target == "parts"]
    assert len(calls) == 1
    counts = []
    block.parts.register_forward_hook(lambda *a: counts.append(1))
    model(torch.randn(1, 24, 12, 12))
    assert counts == [1]


def test_split_exports_to_onnx_with_parity(tmp_path):
    from netspec.exporters.onnx import export_onnx, load_source

    path = tmp_path / "shuffle.yaml"
    path.write_text(spec_text("  - shuffle_s2: {inp: 24, c: 16}\n  - shuffle_s1: 16\n  - global_avgpool\n"
                              "  - flatten\n  - linear: 5\n"))
    report = export_onnx(load_source(path), tmp_path / "shuffle.onnx")
    assert report.max_abs_diff <= 1e-5 and report.top1_agreement == 1.0


# -- errors ------------------------------------------------------------------------------------

def error_of(text: str):
    with pytest.raises(SpecError) as info:
        netspec.check(netspec.loads(text, "e.yaml"))
    return info.value.diagnostics[0]


def located(text: str) -> tuple[int, int, str, str | None]:
    d = error_of(text)
    return d.mark.line, d.mark.col, d.message, d.hint


HEAD = "name: t\ninput: [8, 4, 4]\nlayers:\n  - split: 2\n    name: parts\n"


def test_unknown_part_index_is_located_with_the_valid_ones():
    line, col, message, hint = located(HEAD + "  - identity:\n    from: parts.2\n")
    assert (line, col) == (7, 11)
    assert "split `parts` has outputs 0 to 1, not 2" in message and hint == "write one of `parts.0`, `parts.1`"


def test_reading_a_split_whole_or_implicitly_is_an_error():
    _, _, message, hint = located(HEAD + "  - identity:\n    from: parts\n")
    assert "is a split with 2 outputs" in message and "`parts.0`" in hint
    line, _, message, hint = located(HEAD + "  - relu\n")
    assert line == 6 and "reads the split before it (line 4)" in message and hint == "read one: `from: parts.0`"
    report = netspec.check(netspec.loads("name: t\ninput: [8, 4, 4]\nlayers:\n  - relu\n  - split: 2\n"))
    assert report.output == (2, 4, 4, 4)  # at the end of a list: the parts, stacked


def test_part_of_a_layer_that_is_not_a_split():
    _, _, message, hint = located("name: t\ninput: [8, 4, 4]\nlayers:\n  - relu:\n    name: a\n"
                                  "  - identity:\n    from: a.0\n")
    assert "`a` is a relu with one output" in message and hint == "write `from: a`"
    _, _, message, _ = located("name: t\ninput: [8, 4, 4]\nlayers:\n  - identity:\n    from: input.1\n")
    assert "`input` is one tensor" in message


def test_shape_errors_of_split_and_shuffle():
    d = error_of("name: t\ninput: [9, 4, 4]\nlayers:\n  - split: 2\n    name: p\n  - identity:\n    from: p.0\n")
    assert d.mark.line == 4 and "9 channels do not split into 2 equal parts" in d.message
    d = error_of("name: t\ninput: [9, 4, 4]\nlayers:\n  - channel_shuffle: 2\n")
    assert d.mark.line == 4 and "9 channels do not divide into 2 groups" in d.message
    d = error_of("name: t\ninput: [8, 4, 4]\nlayers:\n  - split: 1\n    name: p\n  - identity:\n    from: p.0\n")
    assert d.mark.line == 4


# -- block parameters that are layer types ---------------------------------------------------------

CBR = """\
name: t
input: [3, 8, 8]
blocks:
  cbr:
    params: {out: 4, act: relu}
    layers:
      - conv: {out: $out, kernel: 3, padding: 1, bias: false}
      - bn
      - $act
layers:
"""


def test_a_block_parameter_places_a_layer_type():
    layers = ("  - cbr\n  - cbr: {act: silu}\n  - cbr: {act: {leaky_relu: 0.25}}\n"
              "  - cbr: {act: hardswish}\n")
    model, report = build_with_report(netspec.loads(CBR + layers))
    kinds = [r.kind for r in report.rows if r.leaf and r.kind not in ("conv", "bn")]
    assert kinds == ["relu", "silu", "leaky_relu", "hardswish"]
    acts = [m[2] for m in model]
    assert [type(a) for a in acts] == [nn.ReLU, nn.SiLU, nn.LeakyReLU, nn.Hardswish]
    assert acts[2].negative_slope == 0.25


def test_a_layer_type_parameter_keeps_node_keys_and_blocks():
    text = CBR.replace("      - $act\n", "      - $act:\n        name: a\n      - add:\n        from: [a, input]\n")
    text = text.replace("input: [3, 8, 8]", "input: [4, 8, 8]").replace("  cbr:", "  one:\n    layers: [relu]\n  cbr:")
    report = netspec.check(netspec.loads(text + "  - cbr: {act: one}\n"))
    assert [r.kind for r in report.rows][-3:] == ["one", "relu", "add"]


def test_a_parameter_that_is_not_a_layer_type_is_located():
    line, col, message, hint = located(CBR + "  - cbr: {act: siluu}\n")
    assert (line, col) == (11, 16)
    assert message == "parameter `act` = `siluu` is not a layer type (it is used as `- $act`)"
    assert hint == "did you mean `silu`?"
    line, col, message, _ = located(CBR + "  - cbr: {act: 3}\n")
    assert (line, col) == (11, 16) and "is used as a layer type (`- $act`) but is 3 (int)" in message
    line, _, message, hint = located(CBR.replace("$act", "$actt") + "  - cbr\n")
    assert line == 9 and message == "`$actt` is not a parameter of block `cbr` or a var"
    assert hint == "did you mean `act`?"
    line, col, _, _ = located(CBR.replace("act: relu", "act: rleu") + "  - cbr\n")
    assert (line, col) == (5, 27)
