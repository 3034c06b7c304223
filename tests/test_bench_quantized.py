"""`netspec bench --quantize int8|fp16`, quantized files and other registered formats in `bench`."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch

from netspec.exporters.runtime import gpu_present
from netspec.run import load_source
from tests.conftest import SPECS, lenet_digits_run

FAST = ("--batch", "1", "--seconds", "0.1", "--threads", "1")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return lenet_digits_run(tmp_path_factory, "bench-q", 3)


@pytest.fixture(scope="module")
def eager_accuracy(digits_run) -> float:
    """Top-1 % of the run's own PyTorch model on its whole validation split, computed here."""
    source = load_source(digits_run)
    data = source.run.validation_data()
    x = source.card.preprocessing.apply_(data.val.images.numpy().astype(np.float32))
    with torch.no_grad():
        predicted = source.model(torch.from_numpy(x)).argmax(1).numpy()
    return 100.0 * float((predicted == data.val.labels.numpy()).mean())


def rows(out: str) -> dict[str, list[str]]:
    """backend → the cells after it, for the table's rows at batch 1."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}1\s+(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).split()
    return found


def percents(cells: list[str]) -> list[float | None]:
    """The top-1 and agreement cells ("97.50 %" or "—") at the end of a row."""
    text = " ".join(cells[4:])
    values = re.findall(r"([\d.]+) %|—", text)
    return [float(v) if v else None for v in values][-2:]


def test_int8_rows_sit_beside_fp32_with_accuracy_on_the_validation_split(digits_run, eager_accuracy, cli):
    result = cli("bench", digits_run, "--quantize", "int8,fp16", *FAST)
    assert result.code == 0, result.err
    table = rows(result.out)
    assert {"pytorch eager", "onnxruntime cpu fp32", "onnxruntime cpu int8"} <= set(table), result.out
    eager, fp32, int8 = (percents(table[k]) for k in ("pytorch eager", "onnxruntime cpu fp32", "onnxruntime cpu int8"))
    assert eager[0] == pytest.approx(eager_accuracy, abs=0.005)  # all 360 validation images
    assert fp32 == [pytest.approx(eager_accuracy, abs=0.005), 100.0]  # fp32 agrees with itself
    assert abs(int8[0] - fp32[0]) <= 3 and 90 <= int8[1] <= 100
    assert "360 images of the run's digits, validation split" in result.out
    assert "calibrated on 256 images (digits, training split)" in result.out
    assert re.search(r"onnxruntime cpu int8 vs fp32, batch 1: [\d.]+×", result.out)
    if not gpu_present():
        assert "fp16: skipped, no GPU here" in result.out and not any("fp16" in k for k in table)


def test_a_spec_gets_agreement_on_random_inputs_and_no_accuracy(tmp_path, cli):
    spec = tmp_path / "small.yaml"
    spec.write_text("name: small\ninput: [1, 12, 12]\nlayers:\n  - conv: {out: 4, kernel: 3}\n  - bn\n  - relu\n"
                    "  - flatten\n  - linear: 5\n")
    result = cli("bench", spec, "--quantize", "int8", *FAST)
    assert result.code == 0, result.err
    table = rows(result.out)
    top1, agree = percents(table["onnxruntime cpu int8"])
    assert top1 is None and 0 <= agree <= 100
    assert percents(table["onnxruntime cpu fp32"]) == [None, 100.0]
    assert "compared on 256 random inputs" in result.out and "synthetic" in result.out


@pytest.fixture(scope="module")
def int8_file(digits_run, tmp_path_factory):
    from typer.testing import CliRunner

    from netspec import cli as cli_module

    path = tmp_path_factory.mktemp("bench-q-file") / "lenet5.int8.onnx"
    result = CliRunner().invoke(cli_module.app, ["export", str(digits_run), "--onnx", "--quantize", "int8",
                                                 "-o", str(path)])
    assert result.exit_code == 0, result.output
    recorded = re.search(r"int8 ([\d.]+)% on 360 validation samples", result.output)
    return path, float(recorded.group(1))


def test_a_quantized_file_is_labelled_by_its_card_with_the_accuracy_it_records(int8_file, cli):
    path, printed = int8_file
    result = cli("bench", path, *FAST)
    assert result.code == 0, result.err
    table = rows(result.out)
    assert list(table) == ["onnxruntime cpu int8"] or (gpu_present() and "onnxruntime cpu int8" in table)
    top1, agree = percents(table["onnxruntime cpu int8"])
    assert top1 == pytest.approx(printed, abs=0.005) and 90 <= agree <= 100
    assert "as recorded in the file's model card" in result.out


def with_quantization(path, tmp_path, value: str):
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "netspec.quantization":
            prop.value = value
    out = tmp_path / "edited.onnx"
    onnx.save(model, str(out))
    return out


def test_a_quantized_files_card_is_checked_before_it_is_shown(int8_file, tmp_path, cli):
    path, _ = int8_file
    result = cli("bench", with_quantization(path, tmp_path, json.dumps({"type": "int4"})), *FAST)
    assert result.code == 2 and "netspec.quantization" in result.err and "int4" in result.err, result.err
    assert "Traceback" not in result.err
    absurd = json.dumps({"type": "int8", "accuracy": {"int8": 1e9, "agreement": "all"}})
    result = cli("bench", with_quantization(path, tmp_path, absurd), *FAST)
    assert result.code == 0, result.err
    assert percents(rows(result.out)["onnxruntime cpu int8"]) == [None, None]  # shown as —, never 1e9


def test_a_pt2_file_is_benched_through_the_exporter_registry(digits_run, tmp_path, cli):
    result = cli("export", digits_run, "--format", "pt2", "-o", tmp_path / "lenet5.pt2")
    assert result.code == 0, result.err
    result = cli("bench", tmp_path / "lenet5.pt2", *FAST)
    assert result.code == 0, result.err
    assert "torch.export cpu" in rows(result.out), result.out
    assert "PyTorch eager: n/a for a bare .pt2 file" in result.out


@pytest.mark.parametrize("args", [("--quantize", "int4"), ("--quantize", "int8,bf16"), ("--quantize", "")])
def test_an_unknown_quantization_is_refused_naming_the_option(args, cli):
    result = cli("bench", SPECS / "lenet.yaml", *args, *FAST)
    assert result.code == 2 and "--quantize" in result.err, result.err
    assert result.out == "" and "Traceback" not in result.err


def test_quantize_with_a_model_file_is_refused_naming_the_option(int8_file, cli):
    result = cli("bench", int8_file[0], "--quantize", "int8", *FAST)
    assert result.code == 2 and "--quantize" in result.err and "benched as it is" in result.err, result.err


DYNAMIC = """name: open_size
input: [1, H, W]
layers:
  - conv: {out: 4, kernel: 3, stride: 2}
  - relu
  - global_avgpool
  - flatten
  - linear: 3
"""


def test_a_file_with_open_sizes_needs_input_and_checks_it_against_its_rules(tmp_path, cli):
    (tmp_path / "open.yaml").write_text(DYNAMIC)
    result = cli("export", tmp_path / "open.yaml", "--onnx", "-o", tmp_path / "open.onnx")
    assert result.code == 0, result.err
    result = cli("bench", tmp_path / "open.onnx", *FAST)
    assert result.code == 2 and "bench needs a fixed input size" in result.err and "--input" in result.err, result.err
    result = cli("bench", tmp_path / "open.onnx", "--input", "1x2x20", *FAST)  # the 3×3 conv needs H ≥ 3
    assert result.code == 2 and "--input" in result.err and "H ≥ 3" in result.err, result.err
    assert cli("bench", tmp_path / "open.onnx", "--input", "3x20x20", *FAST).code == 2  # 1 channel, fixed
    result = cli("bench", tmp_path / "open.onnx", "--input", "1x20x30", *FAST)
    assert result.code == 0, result.err
    assert "onnxruntime cpu" in rows(result.out)
