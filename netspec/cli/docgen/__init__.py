"""Generate docs/spec-language.md from the layer registry, the macros and the spec models.

Every layer section (fields, types, defaults, formulas, the example) is rendered from the
classes themselves, and every "`netspec check FILE` gives:" block is what the real command
line prints for that file (fields.cli_check_lines runs the CLI's main), so the reference cannot
drift from the code or from the CLI's layout. It lives in the CLI package because it runs the CLI:
no library module imports the CLI. tests/test_docs.py fails when the committed file differs
from this output, and re-runs every command the docs show. Regenerate with

    python -m netspec.cli.docgen > docs/spec-language.md
"""

from __future__ import annotations

from netspec.cli.docgen.fields import REGENERATE, example_spec, short_form, type_text  # noqa: F401 (used by tests)
from netspec.cli.docgen.guide import (
    blocks_section,
    conventions_section,
    entries_section,
    expressions_section,
    init_section,
    introduction,
    symbolic_section,
    train_section,
)
from netspec.cli.docgen.reference import reference


def spec_language_markdown() -> str:
    """The full docs/spec-language.md text."""
    parts = [
        introduction(),
        entries_section(),
        expressions_section(),
        blocks_section(),
        init_section(),
        train_section(),
        symbolic_section(),
        conventions_section(),
        reference(),
    ]
    lines = [line for part in parts for line in part]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
