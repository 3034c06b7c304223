"""`netspec check` end to end: the table, --json, --input, --set, symbolic sizes, errors."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, SPECS


def test_lenet_table_shows_formula_with_numbers_and_totals(cli):
    result = cli("check", SPECS / "lenet.yaml")
    assert result.code == 0, result.err
    assert "H = ⌊(28 + 2·2 − 5)/1⌋ + 1 = 28" in result.out
    assert "16·5·5 = 400" in result.out
    assert "61,706" in result.out
    assert "FLOPs (= 2×MACs): 833,040" in result.out
    assert "6×28×28" in result.out and "16×5×5" in result.out


def test_json_has_the_documented_fields(cli):
    result = cli("check", SPECS / "lenet.yaml", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["name"] == "lenet5"
    assert report["input"] == [1, 28, 28]
    assert report["output"] == [10]
    assert report["params"] == 61706 and report["trainable_params"] == 61706
    assert report["macs"] == 416520 and report["flops"] == 2 * 416520
    first = report["layers"][0]
    assert {"index", "type", "output", "params", "macs", "formula", "line"} <= set(first)
    assert first["type"] == "conv" and first["output"] == [6, 28, 28] and first["line"] == 7
    leaves = [row for row in report["layers"] if row["leaf"]]
    assert sum(row["params"] for row in leaves) == report["params"]


def test_input_override_and_set(cli, tmp_path):
    result = cli("check", SPECS / "torchvision/vgg16.yaml", "--input", "3x64x64", "--set", "classes=10", "--json")
    report = json.loads(result.out)
    assert report["input"] == [3, 64, 64] and report["output"] == [10]
    # adaptive_avgpool keeps the classifier input at 512·7·7 whatever the image size
    assert report["params"] == 138_357_544 - 4096 * 990 - 990


def test_unknown_set_name_is_a_user_error(cli):
    result = cli("check", SPECS / "torchvision/vgg16.yaml", "--set", "clases=10")
    assert result.code == 2
    assert "`clases` is not a var of this spec" in result.err and "did you mean `classes`?" in result.err


def test_symbolic_input_prints_formulas_and_constraints(cli):
    result = cli("check", SPECS / "lenet.yaml", "--input", "1xHxW", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    pool2 = [r for r in report["layers"] if r["type"] == "maxpool"][1]
    assert pool2["output"] == [16, "⌊H/4⌋ − 2", "⌊W/4⌋ − 2"]
    assert "H ≥ 12" in report["constraints"] and "W ≥ 12" in report["constraints"]
    assert any("in_features = 16·(⌊H/4⌋ − 2)·(⌊W/4⌋ − 2)" in c for c in report["constraints"])


def test_symbolic_merge_reports_divisibility(cli, tmp_path):
    spec = tmp_path / "odd.yaml"
    spec.write_text(
        "name: odd\ninput: [8, H, W]\nlayers:\n"
        "  - parallel:\n"
        "      paths:\n"
        "        - [maxpool: 2]\n"
        "        - [conv: {out: 8, kernel: 3, stride: 2, padding: 1}]\n"
    )
    result = cli("check", spec, "--json")
    assert result.code == 0, result.err
    constraints = json.loads(result.out)["constraints"]
    assert any(c.startswith("H mod 2 = 0") for c in constraints), constraints
    assert any(c.startswith("W mod 2 = 0") for c in constraints), constraints


def test_shape_error_prints_table_up_to_the_failing_layer(cli, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput: [1, 28, 28]\nlayers:\n  - conv: {out: 16, kernel: 5}\n"
                    "  - maxpool: 2\n  - linear: 120\n")
    result = cli("check", spec)
    assert result.code == 2
    assert result.err.startswith(
        f"{spec}:6:5: error: layers[2] linear: input has shape 16×12×12, linear needs a vector")
    assert "hint: insert `- flatten` before this layer" in result.err
    assert "16×12×12" in result.out and "up to the error" in result.out
    assert "Traceback" not in result.err


def test_user_error_has_no_traceback_but_debug_shows_one(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput: [1, 28, 28]\nlayers:\n  - conv: {out: 16, kernal: 5}\n")
    plain = subprocess.run([sys.executable, str(ROOT / "cli.py"), "check", str(spec)], capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.count("error:") == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--debug", "check", str(spec)],
                           capture_output=True, text=True)
    assert "Traceback" in debug.stderr and "SpecError" in debug.stderr


def test_missing_file_is_a_user_error(cli, tmp_path):
    result = cli("check", tmp_path / "nope.yaml")
    assert result.code == 2 and "no such file" in result.err
