"""docs/deployment.md shows what `netspec export` prints for the specs it shows or ships.

Each case names the paragraph that introduces a shown output (`netspec export FILE ...` gives:),
runs that command on the spec (the doc's own ```yaml block for `halving.yaml`, the repository's
file otherwise) and compares every line. Only the measured parity differences (x.xxe-yy), which
may vary with the CPU's kernels, are masked. The quantize outputs need a trained run and are
compared in tests/test_quantize.py.
"""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "deployment.md"
MEASURED = re.compile(r"\d\.\d\de[-+]\d\d")


def block_after(text: str, intro: str) -> list[str]:
    """The lines of the first fenced block after `intro` (fences may be indented in a list)."""
    lines = text[text.index(intro):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("```"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("```"))
    indent = len(lines[start]) - len(lines[start].lstrip())
    return [line[indent:] for line in lines[start + 1:end]]


CASES = ["`netspec export halving.yaml --onnx` prints:", "`netspec export halving.yaml --format pt2` gives:",
         "`netspec export specs/lenet.yaml --onnx --input 1xHxW` prints"]


@pytest.mark.parametrize("intro", CASES)
def test_shown_export_output_is_what_the_cli_prints(intro, cli, tmp_path):
    text = DOC.read_text(encoding="utf-8")
    assert intro in text, f"docs/deployment.md no longer introduces {intro}"
    command = shlex.split(re.search(r"`netspec ([^`]+)`", intro).group(1))
    if command[1] == "halving.yaml":
        (tmp_path / "halving.yaml").write_text("\n".join(block_after(text, "This spec (`halving.yaml`)")) + "\n")
        cwd = tmp_path
    else:
        cwd = ROOT
        command += ["-o", str(tmp_path / "out.onnx")]  # refused before writing; never into the repository
    result = cli(*command, cwd=cwd)
    real = [MEASURED.sub("N", line) for line in (result.out + result.err).rstrip("\n").splitlines()]
    shown = [MEASURED.sub("N", line) for line in block_after(text, intro)]
    assert shown == real, "\n".join(real)
