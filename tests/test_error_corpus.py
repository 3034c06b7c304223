"""The error corpus: every broken spec under tests/broken/ and the diagnostics it must produce.

Each corpus file is one small spec that makes ONE kind of mistake (or, for the `many_errors_*`
files, several independent ones that must all be reported at once). `netspec check FILE` must
exit 2, print no traceback, print only GCC-style lines

    tests/broken/FILE.yaml:LINE:COL: error: <where>: <what>
      hint: <optional>

(or `error: <what>` for a problem with no location), and print the diagnostics that the
file's header promises.

Header format — comment lines at the top of the file, before the first non-comment line:

    # <free text: the mistake this file makes>
    #
    # expect-line: N       starts one expected diagnostic, reported at line N of the file;
    #                      `none` for an error with no location (printed as `error: ...`)
    # expect-col: N        optional: its column
    # expect-file: PATH    optional: the diagnostic points into another file (PATH is relative to
    #                      this file's folder), e.g. the included file that closes an include cycle
    # expect: TEXT         a substring of that diagnostic's message (the text after `error: `);
    #                      repeatable, and every one must appear in the same diagnostic
    # expect-hint: TEXT    a substring of the `  hint: ` line printed under that diagnostic
    # expect-count: N      optional, once per file: the number of diagnostics in all; by default
    #                      exactly one per `expect-line`, so a stray follow-on error fails the case

Expected diagnostics are matched to printed ones in any order, each to a different one.
A trailing `# <--` comment in the body marks the offending line for human readers only.
Files without an `# expect` header (helpers that other corpus files include) are not run.
Expectations state what a user SHOULD see: a case that fails here is a netspec defect, not a
reason to loosen the header.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

BROKEN = ROOT / "tests" / "broken"
_HEADER = re.compile(r"^#\s*(expect(?:-[a-z]+)?)\s*:\s?(.*?)\s*$")
_DIAGNOSTIC = re.compile(r"^(?:(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): )?error: (?P<message>.*)$")
_HINT = "  hint: "


@dataclass
class Expected:
    line: int | None  # None: an error with no location
    file: str  # as netspec displays it (relative to the repository root)
    col: int | None = None
    messages: list[str] = field(default_factory=list)
    hint: str | None = None

    def describe(self) -> str:
        where = f"{self.file}:{self.line if self.line is not None else '-'}" + (f":{self.col}" if self.col else "")
        text = " … ".join(self.messages)
        return f"{where}: {text}" + (f"  [hint: {self.hint}]" if self.hint else "")


@dataclass
class Printed:
    file: str | None
    line: int | None
    col: int | None
    message: str
    hint: str | None = None

    def describe(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: " if self.file else ""
        return f"{where}error: {self.message}" + (f"\n    hint: {self.hint}" if self.hint else "")


@dataclass
class Case:
    path: Path
    expected: list[Expected]
    count: int | None

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _display(path: Path) -> str:
    return path.resolve().relative_to(ROOT.resolve()).as_posix()


def parse_header(path: Path) -> Case | None:
    """The corpus header of `path`, or None for a helper file without `# expect` lines."""
    expected: list[Expected] = []
    count = None
    for raw in path.read_bytes().splitlines():
        text = raw.decode("utf-8", errors="replace")
        if not text.startswith("#"):
            break
        match = _HEADER.match(text)
        if not match:
            continue
        key, value = match.groups()
        if key == "expect-count":
            count = int(value)
        elif key == "expect-line":
            expected.append(Expected(None if value == "none" else int(value), _display(path)))
        elif not expected:
            raise ValueError(f"{path}: `# {key}:` before any `# expect-line:`")
        elif key == "expect":
            expected[-1].messages.append(value)
        elif key == "expect-hint":
            expected[-1].hint = value
        elif key == "expect-col":
            expected[-1].col = int(value)
        elif key == "expect-file":
            expected[-1].file = _display(path.parent / value)
        else:
            raise ValueError(f"{path}: unknown header key `{key}`")
    if not expected:
        return None
    for e in expected:
        if not e.messages:
            raise ValueError(f"{path}: `# expect-line: {e.line}` has no `# expect:` text")
    return Case(path, expected, count)


def corpus() -> list[Case]:
    cases = [parse_header(p) for p in sorted(BROKEN.rglob("*.yaml"))]
    return [c for c in cases if c is not None]


CASES = corpus()


def parse_stderr(err: str, allowed_files: set[str]) -> tuple[list[Printed], list[str]]:
    """The diagnostics printed, and every stderr line that is not a diagnostic or a hint."""
    printed: list[Printed] = []
    stray: list[str] = []
    for line in err.splitlines():
        if line.startswith(_HINT) and printed and printed[-1].hint is None:
            printed[-1].hint = line[len(_HINT):]
            continue
        match = _DIAGNOSTIC.match(line)
        if match and (match["file"] is None or match["file"] in allowed_files):
            number = int(match["line"]) if match["line"] else None
            col = int(match["col"]) if match["col"] else None
            printed.append(Printed(match["file"], number, col, match["message"]))
        else:
            stray.append(line)
    return printed, stray


def _fits(e: Expected, p: Printed) -> bool:
    if e.line is None:
        if p.file is not None:
            return False
    elif (p.file, p.line) != (e.file, e.line) or (e.col is not None and p.col != e.col):
        return False
    if not all(m in p.message for m in e.messages):
        return False
    return e.hint is None or (p.hint is not None and e.hint in p.hint)


def _match(expected: list[Expected], printed: list[Printed]) -> bool:
    """Whether each expectation fits a different printed diagnostic (any order)."""
    if len(expected) > len(printed):
        return False
    for chosen in itertools.permutations(range(len(printed)), len(expected)):
        if all(_fits(e, printed[i]) for e, i in zip(expected, chosen)):
            return True
    return False


def run_check(cli, path: Path):
    return cli("check", path.relative_to(ROOT).as_posix(), cwd=ROOT)


@pytest.mark.parametrize("case", CASES, ids=[c.rel.removeprefix("tests/broken/") for c in CASES])
def test_broken_spec_reports_the_expected_diagnostics(cli, case: Case):
    result = run_check(cli, case.path)
    report = (f"\n--- stderr of `netspec check {case.rel}` (exit {result.code}) ---\n{result.err}"
              "--- expected ---\n" + "\n".join(e.describe() for e in case.expected))
    assert result.code == 2, report
    assert "Traceback" not in result.err and "internal error" not in result.err, report
    printed, stray = parse_stderr(result.err, {case.rel} | {e.file for e in case.expected})
    assert not stray, f"lines that are not `file:line:col: error: ...` or `  hint: ...`: {stray}" + report
    assert printed, report
    wanted = case.count if case.count is not None else len(case.expected)
    assert len(printed) == wanted, f"expected {wanted} diagnostic(s), got {len(printed)}" + report
    assert _match(case.expected, printed), report


# -- the corpus itself -----------------------------------------------------------------------------

def test_corpus_is_large_and_covers_errors_reported_together():
    assert len(CASES) >= 70
    several = [c for c in CASES if len(c.expected) >= 2 and all(e.line for e in c.expected)]
    assert len(several) >= 3, "`all schema errors are reported at once` needs 3+ multi-error files"


def test_helper_files_are_only_included_ones():
    # A top-level file without a header would silently never run.
    helpers = [p for p in BROKEN.rglob("*.yaml") if parse_header(p) is None]
    assert all(p.parent != BROKEN for p in helpers), helpers


# -- limits that guard against hangs ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["yaml_alias_bomb.yaml", "yaml_nesting_too_deep.yaml"])
def test_resource_attacks_fail_fast(cli, name):
    path = BROKEN / name
    start = time.process_time()
    result = run_check(cli, path)
    elapsed = time.process_time() - start
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert elapsed < 2.0, f"{name} took {elapsed:.2f} s: the loader's limit did not stop it early"


def test_alias_budget_is_not_spent_on_plain_nesting():
    # The bomb guard must count each node once: 40,000 scalars six lists deep (no alias at all,
    # ~120 KB) are 40,000 nodes, well under the 200,000-node budget, not an "alias bomb".
    from netspec.lang.source import MAX_NODES, parse_yaml

    scalars = MAX_NODES // 5
    text = "x: " + "[" * 6 + ", ".join(["1"] * scalars) + "]" * 6 + "\n"
    tree = parse_yaml(text, "plain.yaml")
    assert len(tree["x"][0][0][0][0][0]) == scalars


def test_file_over_the_size_cap(cli, tmp_path):
    spec = tmp_path / "huge.yaml"
    padding = "# " + "x" * 1000 + "\n"
    spec.write_text("name: huge\ninput: [3, 32, 32]\nlayers:\n  - relu\n" + padding * 1100)
    assert spec.stat().st_size > 1 << 20
    start = time.process_time()
    result = cli("check", spec)
    assert time.process_time() - start < 2.0
    assert result.code == 2 and "Traceback" not in result.err, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert re.match(rf"^{re.escape(str(spec))}:1:1: error: .*1,048,576-byte limit", lines[0]), result.err


# -- outside the in-process harness ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["linear_on_feature_map.yaml", "expr_injection_import.yaml",
                                  "yaml_alias_bomb.yaml"])
def test_real_process_exits_2_without_traceback(name):
    case = parse_header(BROKEN / name)
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "check", case.rel],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    first = case.expected[0]
    assert done.stderr.startswith(f"{case.rel}:{first.line}:"), done.stderr
    assert "uid=" not in done.stdout  # the injection attempt ran nothing
