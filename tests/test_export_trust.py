"""Issue 9, items 1–3: the opset `netspec export` prints is the file's, its parity figures are
defined for every output shape, and ceil_mode pools export with PyTorch's sizes and values."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from onnx import version_converter
from torch import nn

import netspec.exporters.onnx as onnx_export
import netspec.exporters.opset as opset_module
from netspec.errors import ExportError
from netspec.exporters.ceil_pool import FloorAvgPool, FloorMaxPool, lowered_ceil_pools
from netspec.exporters.onnx import Source, export_onnx, load_source
from netspec.exporters.parity import Agreement, Measure
from netspec.exporters.runtime import OnnxModel
from netspec.modelcard import ModelCard
from tests.conftest import ROOT, SPECS


def write_spec(folder, name, body):
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n" + textwrap.dedent(body))
    return path


def file_opset(path) -> int:
    """The default-domain opset, read with onnx's own loader."""
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


# --- item 1: --opset ----------------------------------------------------------------------------

def test_opset_13_is_refused_in_one_line_naming_what_this_model_reaches(tmp_path):
    """The issue's reproducer, in a real process (a converter traceback goes to the real stderr)."""
    target = tmp_path / "x.onnx"
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", str(SPECS / "lenet.yaml"), "--onnx",
                           "--opset", "13", "-o", str(target)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == [] and "wrote" not in done.stdout
    reached = int(re.search(r"cannot be written below opset (\d+)", done.stderr).group(1))
    assert f"choose {reached} to 23" in done.stderr
    # the floor is onnx's converter's: it takes the opset-18 export to `reached`, and not one lower
    exported = tmp_path / "lenet18.onnx"
    export_onnx(load_source(SPECS / "lenet.yaml"), exported)
    assert file_opset(exported) == 18
    model = onnx.load(str(exported))
    for opset in range(17, reached - 1, -1):
        model = version_converter.convert_version(model, opset)
    with pytest.raises(Exception):
        version_converter.convert_version(model, reached - 1)


@pytest.mark.parametrize("opset", [0, 1, 6, 24, 10_000])
def test_opsets_no_path_writes_are_refused_before_any_work(opset, tmp_path, cli):
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "--opset", opset, "-o", tmp_path / "x.onnx")
    assert result.code == 2 and "choose 7 to 23" in result.err and "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [9, 11])
def test_low_opsets_are_refused_with_this_models_range(opset, tmp_path, cli):
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "--opset", opset, "-o", tmp_path / "x.onnx")
    assert result.code == 2 and "cannot be written below opset" in result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [15, 17, 20, 23])
def test_the_printed_opset_is_the_files(opset, tmp_path, cli):
    target = tmp_path / "x.onnx"
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "--opset", opset, "-o", target)
    assert result.code == 0, result.err
    assert file_opset(target) == opset
    assert f"opset {file_opset(target)}," in result.out.splitlines()[0]
    onnx.checker.check_model(str(target), full_check=True)


@pytest.mark.parametrize("opset", [14, 17])
def test_a_global_pool_exports_below_opset_18_with_its_values(opset, tmp_path, cli):
    """torch writes a global average pool as ReduceMean with opset 18's `axes` input and
    noop_with_empty_axes; below 18 the file must carry neither, and still give PyTorch's numbers."""
    spec = write_spec(tmp_path, "gap", """\
        input: [3, 12, 12]
        layers:
          - conv: {out: 8, kernel: 3}
          - relu
          - global_avgpool
          - flatten
          - linear: 5
        """)
    target = tmp_path / "gap.onnx"
    result = cli("export", spec, "--onnx", "--opset", opset, "-o", target)
    assert result.code == 0, result.err
    model = onnx.load(str(target))
    assert file_opset(target) == opset
    means = [n for n in model.graph.node if n.op_type == "ReduceMean"]
    assert means and all(len(n.input) == 1 and "noop_with_empty_axes" not in [a.name for a in n.attribute]
                         for n in means)
    onnx.checker.check_model(str(target), full_check=True)
    source = load_source(spec)
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        expected = source.model.eval()(x).numpy()
    assert np.abs(OnnxModel(target).run(x.numpy()) - expected).max() < 1e-5


def test_a_reduction_that_is_the_identity_on_empty_axes_stays_at_opset_18():
    """noop_with_empty_axes = 1 has no opset-17 form: refused naming the operator, not silently changed."""
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    node = helper.make_node("ReduceMax", ["x"], ["y"], noop_with_empty_axes=1)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ExportError) as info:
        opset_module._drop_noop_with_empty_axes(model, 17)
    assert "below opset 18" in info.value.format() and "ReduceMax" in info.value.format()


def test_an_exporter_that_keeps_another_opset_is_caught(tmp_path, monkeypatch):
    """torch's exporter keeps 18 when its own conversion fails: netspec reads the file, not the flag."""
    real = onnx_export._torch_export
    monkeypatch.setattr(onnx_export, "_torch_export",
                        lambda model, example, path, opset, *rest: real(model, example, path, 18, *rest))
    with pytest.raises(ExportError) as info:
        export_onnx(load_source(SPECS / "lenet.yaml"), tmp_path / "x.onnx", opset=20)
    assert "wrote opset 18, not 20" in info.value.format()
    assert list(tmp_path.iterdir()) == []


def test_the_range_is_torchs_own():
    from torch.onnx import _constants
    from torch.onnx._internal.exporter import _constants as exporter_constants

    assert opset_module.MAX_OPSET == _constants.ONNX_MAX_OPSET
    assert opset_module.EXPORTER_OPSET == exporter_constants.TORCHLIB_OPSET


# --- item 2: parity figures ---------------------------------------------------------------------

FEATURE_MAP = """\
    input: [3, 8, 8]
    layers:
      - conv: {out: 4, kernel: 3, padding: 1}
      - maxpool: 2
    """


def test_a_feature_map_output_reports_per_position_channel_argmax(tmp_path, cli):
    result = cli("export", write_spec(tmp_path, "fmap", FEATURE_MAP), "--onnx", "-o", tmp_path / "fmap.onnx")
    assert result.code == 0, result.err
    assert "per-position argmax over the 4 channels" in result.out
    percents = [float(p) for p in re.findall(r"([\d.]+)%", result.out)]
    assert percents and all(p <= 100.0 for p in percents)
    agreeing, total = map(int, re.search(r"\((\d+) of (\d+) positions\)", result.out).groups())
    assert agreeing <= total and total % (4 * 4) == 0  # whole 4×4 maps, one per random sample


def _logits(rows):
    return np.array(rows, dtype=np.float32)


def test_top1_counts_samples():
    measure = Measure.for_output((3,), 1e-4)
    expected = _logits([[0, 1, 2], [2, 1, 0], [0, 2, 1]])
    actual = _logits([[0, 1, 2], [2, 1, 0], [2, 0, 1]])  # the last sample's class differs
    assert (measure.kind, measure.agreeing(actual, expected)) == ("top1", 2)
    assert Agreement(measure, 2, 3).text() == "top-1 agreement 66.6% (2 of 3 samples)"


def test_channel_argmax_counts_positions():
    measure = Measure.for_output((4, 2, 3), 1e-4)
    expected = np.random.default_rng(0).standard_normal((2, 4, 2, 3)).astype(np.float32)
    actual = expected.copy()
    top = expected[1, :, 0, 2].argmax()
    actual[1, (top + 1) % 4, 0, 2] = expected[1, top, 0, 2] + 1  # one position changes its channel
    assert (measure.kind, measure.per_sample) == ("channel_argmax", 6)
    assert measure.agreeing(actual, expected) == 2 * 6 - 1


@pytest.mark.parametrize("shape", [(1,), (1, 3, 3), (5, 5), (2, 3, 4, 5)])
def test_other_outputs_count_values_within_tolerance(shape):
    measure = Measure.for_output(shape, 1e-4)
    expected = np.zeros((2, *shape), np.float32)
    actual = expected.copy()
    actual.flat[0] = 1e-3
    assert measure.kind == "values" and measure.per_sample == int(np.prod(shape))
    assert measure.agreeing(actual, expected) == expected.size - 1


def test_no_rounding_up_to_a_perfect_score():
    assert "99.9%" in Agreement(Measure.for_output((10,), 1e-4), 9_999, 10_000).text()


# --- item 3: ceil_mode pools ----------------------------------------------------------------------

def _pool_cases(max_size, dilations=(1, 2, 3)):
    """(kind, size, kernel, stride, padding, dilation) that PyTorch accepts with ceil_mode."""
    for size, k, s, p, d in itertools.product(range(1, max_size + 1), range(1, 6), range(1, 5), range(3), dilations):
        for kind in ("max", "avg_count_pad", "avg_no_pad") if d == 1 else ("max",):
            try:
                out = _torch_pool(kind, k, s, p, d)(torch.zeros(1, 1, size, size + 2))
            except RuntimeError:  # padding over half the window, or no window fits
                continue
            if not out.isinf().any():  # a dilated window that sees only padding is −inf, ceil_mode or not
                yield kind, size, k, s, p, d


def _torch_pool(kind, k, s, p, d):
    if kind == "max":
        return nn.MaxPool2d(k, s, p, d, ceil_mode=True)
    return nn.AvgPool2d(k, s, p, ceil_mode=True, count_include_pad=kind == "avg_count_pad")


def test_floor_rewrites_equal_torchs_ceil_pools_in_eager_mode():
    generator = torch.Generator().manual_seed(0)
    cases = list(_pool_cases(11))
    assert len(cases) > 1500
    for kind, size, k, s, p, d in cases:
        pool = _torch_pool(kind, k, s, p, d)
        x = torch.randn(2, 3, size, size + 2, generator=generator)  # H and W round differently
        want = pool(x)
        got = (FloorMaxPool if kind == "max" else FloorAvgPool)(pool)(x)
        case = (kind, size, k, s, p, d)
        assert got.shape == want.shape, case
        if kind == "max":
            assert torch.equal(got, want), case
        else:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=str(case))


class ManyPools(nn.Module):
    """Every case as one branch on a crop of the input, flattened and concatenated: one export."""

    def __init__(self, cases):
        super().__init__()
        self.crops = [(size, size + 2) for _, size, *_ in cases]
        self.pools = nn.ModuleList(_torch_pool(kind, k, s, p, d) for kind, _, k, s, p, d in cases)

    def forward(self, x):
        return torch.cat([pool(x[..., :h, :w]).flatten(1) for (h, w), pool in zip(self.crops, self.pools)], 1)


def _ceil_effect(size, k, s, p, d, kind) -> str:
    """What ceil_mode does along one axis: torch's sizes, and ONNX's ceil rule (no window dropped)."""
    torch_ceil = _torch_pool(kind, k, s, p, d)(torch.zeros(1, 1, size, size)).shape[2]
    span = size + 2 * p - d * (k - 1) - 1
    floor_rule, onnx_rule = max(0, span // s + 1), -(-span // s) + 1  # the documented ⌊⌋ and ⌈⌉ rules
    return "drops a window" if onnx_rule > torch_ceil else "adds a window" if torch_ceil > floor_rule else "none"


def _export_cases(per_group=3):
    """A few cases of each (pool, dilation, effect along H, effect along W): one export stays fast."""
    groups = {}
    for case in _pool_cases(9, dilations=(1, 2)):
        kind, size, k, s, p, d = case
        key = (kind, d, _ceil_effect(size, k, s, p, d, kind), _ceil_effect(size + 2, k, s, p, d, kind))
        groups.setdefault(key, []).append(case)
    rng = np.random.default_rng(0)
    picked = [group[i] for group in groups.values() for i in rng.permutation(len(group))[:per_group]]
    return groups, picked


def test_ceil_pools_export_with_torchs_sizes_and_values(tmp_path):
    groups, cases = _export_cases()
    assert any("drops a window" in key and "adds a window" in key for key in groups)  # mixed H/W cases too
    model = ManyPools(cases).eval()
    source = Source(model, ModelCard("pools", [2, 9, 11], spec_sha256="0" * 64, output="logits"))
    export_onnx(source, tmp_path / "pools.onnx")  # onnx.checker and parity (1e-4) inside
    x = torch.randn(4, 2, 9, 11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    got = OnnxModel(tmp_path / "pools.onnx", "cpu").run(x.numpy())
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5
    assert all(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.pools)  # eager model untouched


def test_the_issues_ceil_pool_exports_and_matches(tmp_path, cli):
    spec = write_spec(tmp_path, "pool3", """\
        input: [1, 5, 5]
        layers:
          - maxpool: {kernel: 2, stride: 2, padding: 1, ceil_mode: true}
        """)
    result = cli("export", spec, "--onnx", "-o", tmp_path / "pool3.onnx")
    assert result.code == 0, result.err
    onnx.checker.check_model(str(tmp_path / "pool3.onnx"), full_check=True)
    x = torch.randn(3, 1, 5, 5)
    want = nn.MaxPool2d(2, 2, 1, ceil_mode=True)(x).numpy()
    assert want.shape == (3, 1, 3, 3)  # what `netspec check` says
    assert np.array_equal(OnnxModel(tmp_path / "pool3.onnx", "cpu").run(x.numpy()), want)


def test_lowering_is_undone_after_the_export(tmp_path):
    source = load_source(SPECS / "torchvision" / "googlenet.yaml", input="3x64x64")
    pools = [m for m in source.model.modules() if isinstance(m, nn.MaxPool2d) and m.ceil_mode]
    with lowered_ceil_pools(source.model) as swapped:
        assert swapped == len(pools) > 0
        assert not any(isinstance(m, nn.MaxPool2d) and m.ceil_mode for m in source.model.modules())
    assert [m for m in source.model.modules() if isinstance(m, nn.MaxPool2d) and m.ceil_mode] == pools


def test_an_overhanging_ceil_pool_names_why_it_stays_at_opset_18(tmp_path, cli):
    spec = write_spec(tmp_path, "overhang", """\
        input: [1, 6, 6]
        layers:
          - maxpool: {kernel: 3, stride: 2, ceil_mode: true}
        """)
    assert nn.MaxPool2d(3, 2, ceil_mode=True)(torch.zeros(1, 1, 6, 6)).shape[-1] == 3  # floor mode: 2
    result = cli("export", spec, "--onnx", "--opset", "17", "-o", tmp_path / "x.onnx")
    assert result.code == 2 and "cannot be written below opset 18" in result.err and "Pad" in result.err
    assert not (tmp_path / "x.onnx").exists()
    assert cli("export", spec, "--onnx", "-o", tmp_path / "x.onnx").code == 0


class _Runtime:
    def __init__(self, output):
        self.output = output

    def run(self, x):
        return self.output


@pytest.mark.parametrize("torch_out, onnx_out, diff", [
    ([[-np.inf, 1.0]], [[-np.inf, 1.0]], 0.0),  # a window that sees only padding, on both sides
    ([[np.nan, 1.0]], [[np.nan, 1.0]], 0.0),
    ([[0.5, 1.0]], [[np.nan, 1.0]], np.inf),  # NaN on one side never passes as a small difference
    ([[-np.inf, 1.0]], [[-3.4e38, 1.0]], np.inf),
])
def test_parity_differences_with_non_finite_values(torch_out, onnx_out, diff):
    expected = torch.tensor(torch_out, dtype=torch.float32)
    got, _ = onnx_export._compare(_Runtime(np.array(onnx_out, np.float32)), lambda x: expected, torch.zeros(1, 1))
    assert got == diff
