"""docs/spec-language.md is generated from the registry; every layer type must come with working docs."""

from __future__ import annotations

import pytest
from pydantic_core import PydanticUndefined

import netspec
from netspec import docgen
from netspec.layers import REGISTRY
from netspec.macros import MACROS
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
    if getattr(node, "layer", None) is not None:
        return [node.layer]
    children = [getattr(node, a, None) for a in ("nodes", "body", "shortcut", "paths")]
    out: list = []
    for child in children:
        for item in child if isinstance(child, list) else [child]:
            if item is not None and not isinstance(item, str):
                out += _layers(item)
    return out


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
    # the conv example's first row: 16·3·3·3 + 16 params, 16·32·32·27 MACs
    section = markdown.split("\n### `conv`\n", 1)[1].split("\n### ", 1)[0]
    assert "16×32×32     448    442,368" in section
    assert "FLOPs = 2 × MACs" in markdown
    # the symbolic-input section prints what `check` says the sizes must satisfy
    assert "input sizes H, W must satisfy:" in markdown
    assert "H mod 2 = 0" in markdown
