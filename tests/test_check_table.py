"""The `netspec check` table (issue 13): it fits the terminal, `--depth N` collapses containers
into subtotal rows, branches and `from:` sources are shown, and constraint lines name the row."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SPECS

TORCHVISION = SPECS / "torchvision"
ROW = re.compile(r"^ *\d+  ")


def table(out: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header's column names and each row as {column: cell}, cut where the rule's dashes are."""
    lines = out.splitlines()
    rule_at = next(i for i, line in enumerate(lines) if line.startswith("─"))
    spans = [m.span() for m in re.finditer("─+", lines[rule_at])]
    names = [lines[rule_at - 1][a:b].strip() for a, b in spans[:-1]] + [lines[rule_at - 1][spans[-1][0]:].strip()]
    rows = []
    for line in lines[rule_at + 1:]:
        if line.startswith("─"):
            break
        if ROW.match(line):
            rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans)})
            rows[-1]["layer_raw"] = line[spans[1][0]:spans[1][1]]
    return names, rows


def totals(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("input ")):]


@pytest.mark.parametrize("spec", [TORCHVISION / "resnet18.yaml", SPECS / "lenet.yaml", TORCHVISION / "googlenet.yaml"])
def test_80_columns_fit_and_keep_every_row_and_total(cli, monkeypatch, spec):
    wide = cli("check", spec)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli("check", spec)
    assert narrow.code == wide.code == 0
    assert max(len(line) for line in narrow.out.splitlines()) <= 80
    assert max(len(line) for line in wide.out.splitlines()) > 80  # there was something to fit
    _, wide_rows = table(wide.out)
    names, narrow_rows = table(narrow.out)
    assert [r["#"] for r in narrow_rows] == [r["#"] for r in wide_rows]
    for a, b in zip(narrow_rows, wide_rows):  # the numbers are never shortened
        assert (a["output"], a["params"], a["MACs"]) == (b["output"], b["params"], b["MACs"])
    assert "formula" not in names and "--wide prints it" in narrow.out
    assert totals(narrow.out) == totals(wide.out)


def test_wide_keeps_the_formula_column_at_80_columns(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    roomy = cli("check", TORCHVISION / "resnet18.yaml")
    monkeypatch.setenv("COLUMNS", "80")
    wide = cli("check", TORCHVISION / "resnet18.yaml", "--wide")
    assert wide.code == 0 and wide.out == roomy.out
    assert "formula" in table(wide.out)[0]
    assert "H = ⌊(224 + 2·3 − 7)/2⌋ + 1 = 112 (W same)" in wide.out


def test_a_middle_width_wraps_the_formula_column(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    result = cli("check", SPECS / "lenet.yaml")
    lines = result.out.splitlines()
    assert max(len(line) for line in lines) <= 100
    names, rows = table(result.out)
    assert "formula" in names and len(rows) == 12
    # row 0's formula, `H = ⌊(28 + 2·2 − 5)/1⌋ + 1 = 28 (W same)`, continues on the lines below it
    first = next(i for i, line in enumerate(lines) if line.startswith(" 0  conv"))
    assert "(W same)" not in lines[first] and "(W same)" in lines[first + 1]
    assert not ROW.match(lines[first + 1]) and lines[first + 1].strip().endswith("(W same)")
    assert ROW.match(lines[first + 2])  # row 1 follows


def test_depth_1_collapses_resnet50_to_under_a_third_with_the_same_totals(cli):
    full = cli("check", TORCHVISION / "resnet50.yaml")
    short = cli("check", TORCHVISION / "resnet50.yaml", "--depth", "1")
    assert short.code == 0
    assert len(short.out.splitlines()) * 3 < len(full.out.splitlines())
    assert totals(short.out) == totals(full.out)
    _, full_rows = table(full.out)
    by_index = {r["#"]: r for r in full_rows}
    _, rows = table(short.out)
    for row in rows:  # every shown row is the full table's row, its subtotals included
        assert (row["params"], row["MACs"], row["output"]) == (by_index[row["#"]]["params"],
                                                               by_index[row["#"]]["MACs"], by_index[row["#"]]["output"])
    assert any(r["layer"].endswith("▸") for r in rows)


def test_depth_0_rows_add_up_to_the_totals(cli):
    result = cli("check", TORCHVISION / "resnet50.yaml", "--depth", "0")
    _, rows = table(result.out)
    params = sum(int(r["params"].replace(",", "")) for r in rows)
    macs = sum(int(r["MACs"].replace(",", "")) for r in rows)
    assert f"params: {params:,} " in result.out and f"MACs: {macs:,} " in result.out
    assert [r["layer"] for r in rows][:2] == ["stem ▸", "bottleneck×3 ▸"]


def test_depth_with_json_is_refused_rather_than_ignored(cli):
    result = cli("check", TORCHVISION / "resnet50.yaml", "--json", "--depth", "1")
    assert result.code == 2 and "--depth" in result.err and "--json" in result.err and result.out == ""


BRANCHES = """name: branches
input: [3, 8, 8]
layers:
  - conv: {out: 4, kernel: 3, padding: 1}
    name: stem
  - residual:
      body:
        - conv: {out: 8, kernel: 3, stride: 2, padding: 1}
        - relu
      shortcut:
        - conv: {out: 8, kernel: 1, stride: 2}
    name: res
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1}
    from: stem
    name: side
  - add:
    from: [res, side]
"""


def test_branches_and_from_sources_are_shown(cli, tmp_path):
    (tmp_path / "b.yaml").write_text(BRANCHES)
    result = cli("check", tmp_path / "b.yaml")
    assert result.code == 0, result.err
    names, rows = table(result.out)
    assert names[:3] == ["#", "layer", "from"]
    got = [(r["layer_raw"].rstrip().split("(")[0].rstrip(), r["from"]) for r in rows]
    assert got == [
        ("conv", ""),                # 0 stem
        ("residual", ""),            # 1 reads row 0, the row above
        ("├ conv", ""),              # 2 the body starts from the residual's input
        ("│ relu", ""),              # 3
        ("├ conv", "0"),             # 4 the shortcut path reads the residual's input: row 0
        ("└ add", "3,4"),            # 5 body + shortcut
        ("conv", "0"),               # 6 from: stem
        ("add", "1,6"),              # 7 from: [res, side]
    ]


def test_collapsed_rows_stand_for_their_rows_as_sources(cli, tmp_path):
    (tmp_path / "b.yaml").write_text(BRANCHES)
    result = cli("check", tmp_path / "b.yaml", "--depth", "0")
    _, rows = table(result.out)
    assert [(r["#"], r["layer"], r["from"]) for r in rows] == [
        ("0", "conv(out=4, kernel=3, padding=1)", ""), ("1", "residual ▸", ""),
        ("6", "conv(out=8, kernel=3, stride=2, padding=1)", "0"), ("7", "add", "1,6")]


ANY_SIZE = """name: any_size
input: [1, H, W]
layers:
  - conv: {out: 4, kernel: 3, padding: 1}
  - parallel:
      - - maxpool: 2
      - - conv: {out: 4, kernel: 3, stride: 2, padding: 1}
  - flatten
  - linear: 10
"""


def test_constraint_lines_name_the_table_row(cli, tmp_path):
    (tmp_path / "any.yaml").write_text(ANY_SIZE)
    result = cli("check", "any.yaml", cwd=tmp_path)
    assert result.code == 0, result.err
    _, rows = table(result.out)
    labels = {r["#"]: r["layer"] for r in rows}
    conditions = result.out.split("must satisfy:\n", 1)[1].splitlines()
    assert not any("layers[" in line for line in conditions)
    # rows: 0 conv, 1 parallel, 2 maxpool, 3 conv, 4 concat, 5 flatten, 6 linear
    assert labels["4"].endswith("concat (paths)") and labels["6"] == "linear(out=10)"
    assert "  - H mod 2 = 0 (concat inputs differ along axis 1 otherwise; row 4 concat, any.yaml:5:5)" in conditions
    assert any(line.startswith("  - row 6 linear (any.yaml:9:5): in_features = ") for line in conditions)
