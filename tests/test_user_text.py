"""What netspec tells its users is true and addressed to them (issue 9, items 9, 10 and 14).

- `gn` on a C-vector (torch's N×C) is accepted, with 2·C params, and the built module is torch's;
- the reflect / circular padding rule and its message match torch's F.pad at the boundary;
- user docs, CLI help and messages use no words meant for netspec's developers;
- counts are printed with the right noun ("1 epoch", never "1 epochs");
- curves.png has integer epoch ticks and the run's name in its title;
- the run directory's spec.yaml carries no editor-schema comment whose relative path is broken there.
"""

from __future__ import annotations

import ast
import re

import pytest
import torch
import torch.nn.functional as F

import netspec
from netspec.compile.compiler import compile_model
from netspec.lang.source import parse_yaml
from netspec.progress import plural
from netspec.train.rundir import without_editor_schema
from tests.conftest import ROOT, SPECS


def _check(text: str):
    return netspec.check(netspec.loads(text, "t.yaml"))


# -- item 9: gn on a vector ------------------------------------------------------------------------

GN_ON_VECTOR = """\
name: gn_vector
input: [3, 8, 8]
layers:
  - conv: {out: 6, kernel: 3}
  - global_avgpool
  - flatten
  - gn: 3
  - linear: 4
"""


def test_gn_on_a_vector_is_accepted_with_torchs_params(cli, tmp_path):
    (tmp_path / "gn_vector.yaml").write_text(GN_ON_VECTOR)
    result = cli("check", tmp_path / "gn_vector.yaml")
    assert result.code == 0, result.err
    report = _check(GN_ON_VECTOR)
    gn = next(row for row in report.rows if row.kind == "gn")
    assert tuple(gn.output) == (6,)
    assert gn.params == 2 * 6 and gn.macs == 0  # a scale and a shift per feature; no conv/linear work


def test_gn_on_a_vector_builds_torchs_group_norm():
    spec = netspec.loads(GN_ON_VECTOR, "t.yaml")
    report = netspec.check(spec)
    model, modules = compile_model(spec, report)
    gn = modules[next(node for node in report.walk() if node.kind == "gn")]
    features = torch.randn(5, 6)
    torch.nn.init.normal_(gn.weight)
    torch.nn.init.normal_(gn.bias)
    expected = F.group_norm(features, 3, gn.weight, gn.bias, eps=1e-5)
    assert torch.allclose(gn(features), expected)
    assert model(torch.randn(5, 3, 8, 8)).shape == (5, 4)
    assert report.params == sum(p.numel() for p in model.parameters())


def test_gn_on_a_vector_still_needs_groups_dividing_the_features():
    with pytest.raises(netspec.SpecError, match="groups=4 does not divide the 6 channels"):
        _check(GN_ON_VECTOR.replace("gn: 3", "gn: 4"))
    with pytest.raises(Exception):  # torch agrees
        torch.nn.GroupNorm(4, 6)(torch.randn(2, 6))


# -- item 9: reflect / circular padding at torch's boundary ---------------------------------------

def _conv_spec(size: int, pad: int, mode: str) -> str:
    return (f"name: pad\ninput: [1, {size}, {size + 5}]\nlayers:\n"
            f"  - conv: {{out: 1, kernel: 1, padding: {pad}, padding_mode: {mode}}}\n")


def _torch_pads(size: int, pad: int, mode: str) -> bool:
    try:
        F.pad(torch.randn(1, 1, size, size + 5), (pad, pad, pad, pad), mode=mode)
        return True
    except (RuntimeError, ValueError):
        return False


@pytest.mark.parametrize("pad", [1, 2, 3, 5])
def test_reflect_padding_boundary_is_torchs(pad):
    # torch: reflect padding p needs size > p; the case is padding 3 on a 3-pixel input
    assert not _torch_pads(pad, pad, "reflect") and _torch_pads(pad + 1, pad, "reflect")
    with pytest.raises(netspec.SpecError) as refused:
        _check(_conv_spec(pad, pad, "reflect"))
    message = str(refused.value)
    assert f"reflect padding {pad} needs an input larger than {pad} along H" in message
    assert f"got {pad}" in message and "padding < size" in message
    model = netspec.build(netspec.loads(_conv_spec(pad + 1, pad, "reflect"), "t.yaml"))
    assert model(torch.randn(2, 1, pad + 1, pad + 6)).shape[2] == pad + 1 + 2 * pad


@pytest.mark.parametrize("pad", [2, 3])
def test_circular_padding_boundary_is_torchs(pad):
    # torch: circular padding p wraps around at most once, so it needs size ≥ p
    assert not _torch_pads(pad - 1, pad, "circular") and _torch_pads(pad, pad, "circular")
    with pytest.raises(netspec.SpecError, match=f"circular padding {pad} needs an input of at least {pad} "
                                                f"along H .*got {pad - 1}"):
        _check(_conv_spec(pad - 1, pad, "circular"))
    model = netspec.build(netspec.loads(_conv_spec(pad, pad, "circular"), "t.yaml"))
    assert model(torch.randn(2, 1, pad, pad + 5)).shape[2] == 3 * pad


def test_symbolic_reflect_condition_is_the_same_boundary():
    report = _check("name: s\ninput: [1, H, W]\nlayers:\n"
                    "  - conv: {out: 1, kernel: 1, padding: 3, padding_mode: reflect}\n")
    assert "H ≥ 4" in report.constraints and "W ≥ 4" in report.constraints


# -- item 10: no words addressed to developers ----------------------------------------------------

USER_DOCS = [ROOT / "README.md", ROOT / "docs" / "spec-language.md", ROOT / "docs" / "security.md",
             ROOT / "docs" / "benchmarks.md"]
# "seed" meaning the tutorials netspec was started from, and other names from its development notes
DEVELOPER_WORDS = re.compile(r"\bseed[- ](?:loop|style|tutorials?|specs?|files?)\b|\bseeds'|\bthe seeds?\b"
                             r"|\bseed 0\d\d\b|\bdesign card\b|\btwins?\b", re.IGNORECASE)
SOURCES = [*sorted((ROOT / "netspec").rglob("*.py")), *sorted((ROOT / "exporters").rglob("*.py")), ROOT / "cli.py",
           *sorted((ROOT / "benchmarks").glob("*.py"))]


def developer_words(text: str) -> list[str]:
    return [m.group(0) for m in DEVELOPER_WORDS.finditer(text)]


def user_strings(path) -> list[tuple[int, str]]:
    """The string constants of a module that can reach a user (messages, help texts, printed
    labels): every string but the docstrings, which are for people reading the code; a script's
    --help shows its docstring's first paragraph, so that paragraph counts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings[id(first.value)] = node
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            owner = docstrings.get(id(node))
            if owner is None:
                out.append((node.lineno, node.value))
            elif isinstance(owner, ast.Module) and "benchmarks" in path.parts:
                out.append((node.lineno, node.value.split("\n\n")[0]))
    return out


def test_the_pattern_finds_developer_words():
    assert developer_words("as seed tutorials do; a seed-style loop; the seeds; seed 003; design card; its twin") == \
        ["seed tutorials", "seed-style", "the seeds", "seed 003", "design card", "twin"]
    assert developer_words("--seed 3 seeds weights; with seeds 0 and 1; a fixed seed") == []


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_user_docs_have_no_developer_words(doc):
    found = [(n, w) for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
             for w in developer_words(line)]
    assert not found, f"{doc.name}: {found}"


def test_messages_and_help_strings_have_no_developer_words():
    found = [(str(path.relative_to(ROOT)), line, word) for path in SOURCES
             for line, text in user_strings(path) for word in developer_words(text)]
    assert not found, found


def test_cli_help_has_no_developer_words(cli):
    import typer

    from netspec import cli as cli_module

    commands = sorted(typer.main.get_command(cli_module.app).commands)
    assert "check" in commands and "train" in commands
    texts = [cli("--help").out] + [cli(command, "--help").out for command in commands]
    assert all("Usage: netspec" in text for text in texts)
    assert [w for text in texts for w in developer_words(text)] == []


# -- item 14: counts, curves, the spec copy ---------------------------------------------------------

@pytest.mark.parametrize("count, noun, text", [
    (1, "epoch", "1 epoch"), (2, "epoch", "2 epochs"), (0, "step", "0 steps"), (1, "class", "1 class"),
    (10, "class", "10 classes"), (2, "process", "2 processes"), (1437, "image", "1,437 images"),
    (1, "entry", "1 entry"), (3, "entry", "3 entries"),
])
def test_plural(count, noun, text):
    assert plural(count, noun) == text


ONE_PLURAL = re.compile(r"(?<![\d.,])1 (?:epochs|steps|classes|processes|images|samples|channels|entries)\b")


def test_one_epoch_run_says_one_epoch_and_writes_true_files(cli, tmp_path):
    run = tmp_path / "lenet-one"
    result = cli("train", SPECS / "lenet.yaml", "--data", "digits", "--epochs", "1", "--out", run)
    assert result.code == 0, result.err
    assert "1 epoch × " in result.out and "10 classes" in result.out
    assert not ONE_PLURAL.search(result.out + result.err), result.out
    # the copy keeps every line where it was, without the editor comment pointing at ../docs
    original = (SPECS / "lenet.yaml").read_text(encoding="utf-8")
    assert "yaml-language-server" in original.splitlines()[0]
    copy = (run / "spec.yaml").read_text(encoding="utf-8")
    assert "yaml-language-server" not in copy and "$schema" not in copy
    assert copy.splitlines()[1:] == original.splitlines()[1:]
    copied, original = netspec.load(run / "spec.yaml"), netspec.load(SPECS / "lenet.yaml")
    assert netspec.check(copied).params == netspec.check(original).params


def test_group_norm_message_counts_one_channel():
    with pytest.raises(netspec.SpecError, match=r"does not divide the 1 channel\b"):
        _check("name: t\ninput: [1, 4, 4]\nlayers:\n  - gn: 2\n")


def test_editor_schema_comment_is_dropped_only_where_it_is_a_comment():
    text = ("# yaml-language-server: $schema=../docs/spec.schema.json\nname: t\n"
            "description: |\n  # yaml-language-server: this line is text\ninput: [4]\nlayers: [relu]\n")
    kept = without_editor_schema(text)
    assert kept.splitlines() == ["", *text.splitlines()[1:]]
    # the block scalar is data, not a comment: untouched
    assert parse_yaml(kept)["description"] == parse_yaml(text)["description"] == \
        "# yaml-language-server: this line is text\n"
    netspec.loads(kept)


def _drawn_curves(records, path, monkeypatch):
    """The figure netspec.train.metrics.plot_curves draws (kept open to read its axes)."""
    import matplotlib.pyplot as plt

    from netspec.train import metrics

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    metrics.plot_curves(records, path)
    assert path.is_file() and len(kept) == 1
    figure = kept[0]
    figure.canvas.draw()
    return figure


def _visible_ticks(axes) -> list[tuple[float, str]]:
    low, high = axes.get_xlim()
    return [(tick.get_position()[0], tick.get_text()) for tick in axes.get_xticklabels()
            if low <= tick.get_position()[0] <= high]


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 40])
def test_curves_have_integer_epoch_ticks_and_the_run_name(epochs, tmp_path, monkeypatch):
    run_dir = tmp_path / "my-run-7"
    run_dir.mkdir()
    records = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 0.5, "val_acc": 0.6}
               for e in range(1, epochs + 1)]
    figure = _drawn_curves(records, run_dir / "curves.png", monkeypatch)
    assert figure.get_suptitle() == "my-run-7"
    for axes in figure.axes:
        ticks = _visible_ticks(axes)
        assert ticks, axes.get_title()
        for position, label in ticks:
            assert float(position).is_integer() and label.replace("−", "-") == str(int(position)), ticks
        assert {int(p) for p, _ in ticks} <= set(range(1, epochs + 1))
    if epochs <= 7:  # few epochs: every one of them has its tick
        assert [int(p) for p, _ in _visible_ticks(figure.axes[0])] == list(range(1, epochs + 1))


def test_curves_title_is_plain_text(tmp_path, monkeypatch):
    run_dir = tmp_path / "a$b$-1"  # a run name with dollars is not matplotlib mathtext
    run_dir.mkdir()
    records = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5}]
    assert _drawn_curves(records, run_dir / "curves.png", monkeypatch).get_suptitle() == "a$b$-1"


def test_messages_count_one_thing_in_the_singular():
    from netspec.compile.weights import LoadReport

    assert LoadReport(loaded=["w"]).summary().splitlines()[0] == "loaded 1 tensor"
    assert LoadReport(loaded=["w", "b"]).summary().splitlines()[0] == "loaded 2 tensors"
    with pytest.raises(netspec.SpecError, match=r"no hidden units for 1 channel \("):
        _check("name: t\ninput: [1, 4, 4]\nlayers:\n  - se: 2\n")
