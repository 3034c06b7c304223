"""docs/spec-language.md is generated from the registry; every layer type must come with working docs."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

import netspec
from netspec.cli import docgen
from netspec.lang.ir import walk
from netspec.lang.macros import MACROS
from netspec.layers import REGISTRY
from tests.conftest import ROOT

DOC = ROOT / "docs" / "spec-language.md"
KINDS = {**REGISTRY, **MACROS}


@pytest.fixture(scope="module")
def markdown() -> str:
    return docgen.spec_language_markdown()


def test_committed_docs_match_the_registry(markdown):
    assert DOC.exists(), f"docs/spec-language.md is missing; generate it with `{docgen.REGENERATE}`"
    committed = DOC.read_text(encoding="utf-8")
    assert committed == markdown, (
        f"docs/spec-language.md is out of date with the layer registry; regenerate it with `{docgen.REGENERATE}`")


def test_generation_is_deterministic(markdown):
    assert docgen.spec_language_markdown() == markdown


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_documented(kind):
    cls = KINDS[kind]
    assert cls.summary.strip(), f"{kind}: empty `summary`"
    assert cls.formula_doc.strip(), f"{kind}: empty `formula_doc`"
    assert cls.example.strip(), f"{kind}: empty `example`"
    for name, field in cls.model_fields.items():
        documented_default = not field.is_required() and field.default is not PydanticUndefined
        assert (field.description or "").strip() or documented_default, \
            f"{kind}.{name}: give the field a description (Field(..., description=...))"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_example_checks(kind):
    cls = KINDS[kind]
    report = netspec.check(netspec.loads(docgen.example_spec(cls), filename=f"{kind}_example.yaml"))
    assert report.output is not None
    assert any(row.kind == kind or row.label.startswith(kind) for row in report.rows), \
        f"the `{kind}` example does not use `{kind}`"


SHORT_FORMS = sorted(k for k, cls in KINDS.items() if docgen.short_form(cls)[0] is not None)


@pytest.mark.parametrize("kind", SHORT_FORMS)
def test_documented_short_form_means_the_mapping(kind):
    cls = KINDS[kind]
    fragment, _ = docgen.short_form(cls)
    # `kind: value` must validate to the same layer as the mapping `kind: {primary: value}`
    kind_, value = fragment[2:].split(": ", 1)
    short = netspec.loads(f"name: short\ninput: [3, 32, 32]\nlayers:\n  {fragment}\n")
    full = netspec.loads(f"name: full\ninput: [3, 32, 32]\nlayers:\n  - {kind_}: {{{cls.primary}: {value}}}\n")
    assert _layers(short.root) and _layers(short.root) == _layers(full.root)


def _layers(node) -> list:
    """The layer objects of an expanded node tree, in order (positions ignored)."""
    return [n.layer for n in walk(node) if getattr(n, "layer", None) is not None]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_heading(markdown, kind):
    assert f"\n### `{kind}`\n" in markdown, f"no `### `{kind}`` heading in the generated docs"


def test_every_field_is_in_its_table(markdown):
    for kind, cls in KINDS.items():
        section = markdown.split(f"\n### `{kind}`\n", 1)[1].split("\n### ", 1)[0]
        for name, field in cls.model_fields.items():
            assert f"| `{field.alias or name}` |" in section, f"{kind}.{name} missing from its table"


def test_pair_and_choice_types_read_well():
    conv = REGISTRY["conv"]
    assert docgen.type_text(conv, "kernel") == "int ≥ 1 or [h, w]"
    assert docgen.type_text(conv, "padding") == "int ≥ 0, [h, w], `same` or `valid`"
    assert docgen.type_text(conv, "padding_mode") == "`zeros`, `reflect`, `replicate` or `circular`"
    assert docgen.type_text(MACROS["vgg"], "cfg") == "non-empty list of (int ≥ 1 or `M`)"


def test_docs_show_real_numbers(markdown):
    # the conv example's first row (3×32×32 input, 3×3 kernel, padding 1): 16·3·3·3 + 16 params,
    # 16·32·32 output positions × 3·3·3 MACs each
    section = markdown.split("\n### `conv`\n", 1)[1].split("\n### ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("0  conv(out=16"))
    assert "  16×32×32  " in row
    assert row.split()[-2:] == [f"{16 * 3 * 3 * 3 + 16:,}", f"{16 * 32 * 32 * 3 * 3 * 3:,}"]
    assert "FLOPs = 2 × MACs" in markdown
    # the symbolic-input section prints what `check` says the sizes must satisfy
    assert "input sizes H, W must satisfy:" in markdown
    assert "H mod 2 = 0" in markdown


# -- every `netspec check` output the user docs show is what the CLI prints ----------------------------
# A shown output is a fenced block right after a paragraph that ends with ":" and names the command
# in backticks (`netspec check FILE ...` gives:). FILE is the repository's file when there is one,
# else the nearest earlier ```yaml block whose paragraph names `FILE`. A line "..." in the shown
# block stands for one or more real lines left out; every other line must be the real one.

USER_DOCS = [ROOT / "README.md", ROOT / "docs" / "spec-language.md", ROOT / "docs" / "security.md",
             ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "everyday.md"]
CHECK_COMMAND = re.compile(r"`(netspec check [^`]+)`")
# the table's header or rule, its totals, an error line: any layout `check` has had
LOOKS_LIKE_CHECK_OUTPUT = re.compile(r"^ *# +layer |^─+(  ─+)+$|^input \S+ → output |^\S+\.yaml:\d+:\d+: error: "
                                     r"|must satisfy:$")
ELIDED = "..."


@dataclass
class Fence:
    lang: str
    lines: list[str]
    line: int  # 1-based line of the opening fence
    intro: str  # the paragraph just before it, joined into one line


@dataclass
class ShownOutput:
    doc: Path
    command: list[str]  # after `netspec`
    shown: list[str]
    line: int
    spec: str | None  # the text of FILE when the docs give it in a yaml block


def fences(text: str) -> list[Fence]:
    """Every fenced block, with the paragraph (lines up to a blank line) just before it."""
    out, lines = [], text.splitlines()
    paragraph: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            out.append(Fence(line[3:].strip(), lines[i + 1:end], i + 1, " ".join(paragraph)))
            paragraph, i = [], end + 1
            continue
        if line.strip():
            if i > 0 and not lines[i - 1].strip():
                paragraph = []  # a new paragraph begins
            paragraph.append(line.strip())
        i += 1
    return out


def shown_outputs(doc: Path) -> list[ShownOutput]:
    found, blocks = [], fences(doc.read_text(encoding="utf-8"))
    for index, fence in enumerate(blocks):
        commands = CHECK_COMMAND.findall(fence.intro)
        if fence.lang == "yaml" or not fence.intro.endswith(":") or not commands:
            continue
        command = shlex.split(commands[-1])[1:]
        filename = command[1]
        spec = next((b.lines for b in reversed(blocks[:index]) if b.lang == "yaml" and f"`{filename}`" in b.intro),
                    None)
        found.append(ShownOutput(doc, command, fence.lines, fence.line,
                                 None if spec is None else "\n".join(spec) + "\n"))
    return found


def matches_with_elisions(shown: list[str], real: list[str]) -> bool:
    """`shown` is `real` with runs of lines replaced by "..." (each standing for at least one line)."""
    chunks, current = [], []
    for line in shown:
        if line == ELIDED:
            chunks.append(current)
            current = []
        else:
            current.append(line)
    chunks.append(current)
    if len(chunks) == 1:
        return shown == real
    first, *middle, last = chunks
    if real[:len(first)] != first:
        return False
    position = len(first)
    for chunk in middle:
        start = next((i for i in range(position + 1, len(real) - len(chunk) + 1)
                      if real[i:i + len(chunk)] == chunk), None)
        if start is None or not chunk:
            return False
        position = start + len(chunk)
    tail_start = len(real) - len(last)
    return tail_start >= position + 1 and real[tail_start:] == last


SHOWN = [shown for doc in USER_DOCS for shown in shown_outputs(doc)]


def test_the_docs_show_check_outputs():
    per_doc = {doc.name: sum(1 for s in SHOWN if s.doc == doc) for doc in USER_DOCS}
    # README: lenet, lenet symbolic, an error; spec-language: one per layer kind and the guide's four
    assert per_doc["README.md"] >= 3
    assert per_doc["spec-language.md"] >= len(KINDS) + 4


@pytest.mark.parametrize("shown", SHOWN, ids=[f"{s.doc.name}:{s.line}" for s in SHOWN])
def test_shown_check_output_is_what_the_cli_prints(shown, cli, tmp_path):
    filename = shown.command[1]
    if (ROOT / filename).is_file():
        cwd = ROOT  # `check` reads the repository's spec and writes nothing
    else:
        assert shown.spec is not None, f"{shown.doc.name}:{shown.line}: no ```yaml block introduced with `{filename}`"
        (tmp_path / filename).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / filename).write_text(shown.spec, encoding="utf-8")
        cwd = tmp_path
    result = cli(*shown.command, cwd=cwd)
    real = (result.out + result.err).rstrip("\n").splitlines()
    assert matches_with_elisions(shown.shown, real), (
        f"{shown.doc.name}:{shown.line} shows other output than `netspec {' '.join(shown.command)}`, which prints:\n"
        + "\n".join(real))


def test_every_check_like_block_is_a_shown_command():
    for doc in USER_DOCS:
        claimed = {s.line for s in shown_outputs(doc)}
        for fence in fences(doc.read_text(encoding="utf-8")):
            if any(LOOKS_LIKE_CHECK_OUTPUT.search(line) for line in fence.lines):
                assert fence.line in claimed, (
                    f"{doc.name}:{fence.line} looks like `netspec check` output but names "
                    "no command (`netspec check FILE` gives:) that tests/test_docs.py can run")


def test_a_shown_spec_file_is_the_repositorys_file():
    for doc in USER_DOCS:
        for fence in fences(doc.read_text(encoding="utf-8")):
            named = re.fullmatch(r"`([\w./-]+\.yaml)`:", fence.intro)
            if fence.lang == "yaml" and named and (ROOT / named[1]).is_file():
                assert "\n".join(fence.lines) + "\n" == (ROOT / named[1]).read_text(encoding="utf-8"), \
                    f"{doc.name}:{fence.line} shows {named[1]} other than it is"


@pytest.mark.parametrize("shown, matches", [
    (["a", "b", "c"], True),
    (["a", "...", "c"], True),
    (["...", "c"], True),
    (["a", "..."], True),
    (["a", "...", "b", "c"], False),  # "..." must stand for at least one line
    (["a", "B", "c"], False),
    (["a", "...", "d"], False),
    (["...", "b"], False),  # the last shown line must be the last real line
    (["b", "..."], False),  # the first shown line must be the first real line
])
def test_elided_blocks_compare_every_shown_line(shown, matches):
    assert matches_with_elisions(shown, ["a", "b", "c"]) is matches


def test_every_limit_in_the_security_doc_is_defined_where_it_says():
    """docs/security.md's tables name each limit's constant and file; a move must not leave them stale."""
    import re

    rows = re.findall(r"^\|.*\| `([A-Z][A-Z_0-9]+)` \|.*\| `([\w/.]+\.py)` \|\s*$",
                      (ROOT / "docs" / "security.md").read_text(), re.M)
    assert len(rows) >= 20
    stale = [f"{const} in {path}" for const, path in rows
             if not (ROOT / path).exists()
             or not re.search(rf"^\s*{const}\b\s*[:=]", (ROOT / path).read_text(), re.M)]
    assert stale == []
