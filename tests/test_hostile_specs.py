"""The hostile-spec corpus: `netspec check` answers every attack with one clean user error.

Every `tests/hostile/*.yaml` file (sub-folders hold helpers they include, not run on their own)
and every case generated below (devices, FIFOs, symlinks, huge files: things a repository
cannot hold) is checked in a separate process limited to a 4 GB address space, like
`ulimit -v 4000000`, and must

  - exit 2, print a `file:line:col: error:` line and never a traceback or "internal error";
  - never put a raw ESC (or other C0/C1 control byte) on the terminal;
  - finish the check within CHECK_SECONDS (measured inside the process, after the imports
    every case shares) without importing torch; the process is killed after
    HARD_STOP_SECONDS whatever happens.

Header of a corpus file — comment lines at its very top:

    # expect: TEXT      required, first line: a substring of stderr
    # at: LINE:COL      optional: some diagnostic is at this line:col of this file
    # args: OPTIONS     optional: extra `netspec check` options, shell-quoted

Other helpers may drop their own files here (e.g. `budget_*.yaml`): the folder is globbed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

HOSTILE = ROOT / "tests" / "hostile"
ADDRESS_SPACE_BYTES = 4_000_000 * 1024  # `ulimit -v 4000000` (KiB)
CHECK_SECONDS = 2.0  # the bound for each hostile spec; the imports before it are not counted
HARD_STOP_SECONDS = 10.0  # a hang fails the case instead of the suite
WORKERS = 2  # the machine has two cores

# Runs in the child: the limit is set before netspec is imported (in the child itself rather
# than in a preexec_fn, which is unsafe to use from the thread pool below). Times are the
# process's CPU time: the work netspec does, the same whether or not another suite shares the
# cores (wall time on a loaded 2-core machine is off by 2-10x).
_CHILD = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
sys.path.insert(0, {root!r})
start = time.process_time()
import netspec, netspec.shapes.render
from netspec import cli  # start-up: the same for every case
started = time.process_time()
code = cli.main(sys.argv[1:])
elapsed = time.process_time() - started
with open({report!r}, "w") as report:
    report.write(f"{{elapsed:.3f}} {{started - start:.3f}} {{int('torch' in sys.modules)}}")
sys.exit(code)
"""
_HEADER = re.compile(r"^#\s*(expect|at|args)\s*:\s?(.*?)\s*$")
_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): error: ", re.MULTILINE)
_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tab and newline are fine


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str
    at: tuple[str, int, int] | None = None  # (file as printed, line, col)
    cwd: Path | None = None


@dataclass
class Outcome:
    code: int | None
    err: str
    elapsed: float | None = None  # `cli.main`: reading, parsing and checking the spec
    startup: float | None = None  # importing cli and netspec before it
    torch: bool = False
    notes: list[str] = field(default_factory=list)


def corpus_case(path: Path) -> Case:
    header: dict[str, str] = {}
    for raw in path.read_bytes().splitlines()[:5]:
        match = _HEADER.match(raw.decode("utf-8", "replace").removeprefix("\ufeff"))
        if match:
            header.setdefault(match.group(1), match.group(2))
    assert "expect" in header, f"{path.name}: the first line must be `# expect: TEXT`"
    at = None
    if "at" in header:
        line, col = header["at"].split(":")
        at = (str(path), int(line), int(col))
    return Case(path.name, [*shlex.split(header.get("args", "")), str(path)], header["expect"], at)


CORPUS = [corpus_case(p) for p in sorted(HOSTILE.glob("*.yaml"))]


# -- cases generated at test time -------------------------------------------------------------------

SPEC = "name: t\ninput: [3, 8, 8]\ninclude: [{target}]\nlayers:\n  - relu\n"


def _project(folder: Path) -> Path:
    """A project folder with its marker, so the include root is known whatever /tmp holds."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "netspec.toml").write_text("# test project\n")
    return folder


def _including(folder: Path, target: str, *options: str) -> Case:
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(target=target))
    return Case("", [*options, str(spec)], "", (str(spec), 3, 11))


def gen_top_dev_zero(folder):
    return Case("", ["/dev/zero"], "character device")


def gen_top_dev_urandom(folder):
    return Case("", ["/dev/urandom"], "character device")


def gen_top_fifo(folder):
    os.mkfifo(folder / "pipe.yaml")
    return Case("", [str(folder / "pipe.yaml")], "FIFO")


def gen_include_fifo(folder):
    os.mkfifo(_project(folder) / "pipe.yaml")
    return _including(folder, "pipe.yaml")


def gen_top_directory(folder):
    (folder / "dir.yaml").mkdir()
    return Case("", [str(folder / "dir.yaml")], "is a directory")


def gen_top_symlink_loop(folder):
    (folder / "a.yaml").symlink_to(folder / "b.yaml")
    (folder / "b.yaml").symlink_to(folder / "a.yaml")
    return Case("", [str(folder / "a.yaml")], "symbolic link loop")


def gen_include_symlink_loop(folder):
    _project(folder)
    (folder / "a.yaml").symlink_to("b.yaml")
    (folder / "b.yaml").symlink_to("a.yaml")
    return _including(folder, "a.yaml")


def gen_include_symlink_to_passwd(folder):
    (_project(folder) / "innocent.yaml").symlink_to("/etc/passwd")
    return _including(folder, "innocent.yaml")


def gen_include_symlinked_folder_out(folder):
    (_project(folder) / "lib").symlink_to("/etc")
    return _including(folder, "lib/passwd")


def gen_include_symlink_to_dev_zero(folder):
    (_project(folder) / "blocks.yaml").symlink_to("/dev/zero")
    return _including(folder, "blocks.yaml")


def gen_include_symlink_to_dev_zero_rooted(folder):
    (_project(folder) / "blocks.yaml").symlink_to("/dev/zero")
    return _including(folder, "blocks.yaml", "--include-root", "/")


def gen_include_dotdot_out_of_project(folder):
    (folder / "secret").mkdir()
    (folder / "secret" / "key.yaml").write_text("blocks: {password: hunter2}\n")
    return _including(_project(folder / "project"), "../secret/key.yaml")


def gen_include_sibling_without_marker(folder):
    # no netspec.toml anywhere: the root is the spec's own folder, its neighbours are out
    (folder / "other").mkdir()
    (folder / "other" / "b.yaml").write_text("blocks: {x: {layers: [relu]}}\n")
    (folder / "mine").mkdir()
    case = _including(folder / "mine", "../other/b.yaml")
    case.expect = "outside the include root"
    return case


def gen_include_over_size_cap(folder):
    (_project(folder) / "big.yaml").write_text("blocks: {}\n" + "#" * (1 << 20) + "\n")
    return _including(folder, "big.yaml")


def gen_top_sparse_10_gb(folder):
    with open(folder / "sparse.yaml", "wb") as sparse:
        sparse.truncate(10 << 30)  # no disk used; a reader that trusted it would try to load 10 GB
    return Case("", [str(folder / "sparse.yaml")], "over the 1,048,576-byte limit", (str(folder / "sparse.yaml"), 1, 1))


def gen_include_bytes_budget(folder):
    # the worst case the budget lets through: dense YAML (slow to parse) up to just under it
    dense = "blocks:\n  {name}:\n    layers:\n" + "      - relu\n" * 5_000  # ~65 KB each
    for name in ("a", "b"):
        (_project(folder) / f"{name}.yaml").write_text(dense.format(name=name))
    (folder / "c.yaml").write_text("blocks: {}\n# " + "x" * 4000 + "\n")  # tips it over
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(target="a.yaml, b.yaml, c.yaml", layer="relu"))
    return Case("", [str(spec)], "bytes in all", (str(spec), 3, 27))


def gen_esc_in_file_name(folder):
    path = folder / "\x1b[31mevil\x1b[0m.yaml"
    path.write_text("name: t\ninput: [3, 8, 8]\nlayers: 3\n")
    return Case("", [str(path)], "\\x1b[31mevil\\x1b[0m.yaml")


def gen_top_name_too_long(folder):
    return Case("", [str(folder / ("n" * 300 + ".yaml"))], "too long")


def gen_top_proc_environ(folder):
    # procfs says st_size 0; the content (with NULs) is read and refused, never echoed
    return Case("", ["/proc/self/environ"], "U+0000 (NUL)")


GENERATED = {name.removeprefix("gen_"): builder for name, builder in sorted(globals().items())
             if name.startswith("gen_")}


# -- running them ---------------------------------------------------------------------------------

def run_case(case: Case, workdir: Path) -> Outcome:
    handle, name = tempfile.mkstemp(prefix="report-", suffix=".txt", dir=workdir)
    os.close(handle)
    report = Path(name)
    child = _CHILD.format(limit=ADDRESS_SPACE_BYTES, root=str(ROOT), report=str(report))
    env = {**os.environ, "COLUMNS": "240", "HOME": str(workdir), "XDG_CACHE_HOME": str(workdir / "cache")}
    try:
        done = subprocess.run([sys.executable, "-c", child, "check", *case.args], cwd=case.cwd or workdir, env=env,
                              capture_output=True, timeout=HARD_STOP_SECONDS)
    except subprocess.TimeoutExpired as hung:
        return Outcome(None, (hung.stderr or b"").decode("utf-8", "replace"), notes=["killed: hung"])
    outcome = Outcome(done.returncode, done.stderr.decode("utf-8", "replace"))
    if report.stat().st_size:
        elapsed, startup, torch = report.read_text().split()
        outcome.elapsed, outcome.startup, outcome.torch = float(elapsed), float(startup), torch == "1"
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every case run once, two at a time (one subprocess each)."""
    workdir = tmp_path_factory.mktemp("hostile-run")
    cases = list(CORPUS)
    for name, builder in GENERATED.items():
        case = builder(tmp_path_factory.mktemp(name))
        case.name = name
        cases.append(case)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = pool.map(lambda c: (c, run_case(c, workdir)), cases)
        return {case.name: (case, outcome) for case, outcome in results}


NAMES = [c.name for c in CORPUS] + list(GENERATED)


@pytest.mark.parametrize("name", NAMES)
def test_hostile_spec_is_a_clean_user_error(outcomes, name):
    case, outcome = outcomes[name]
    shown = f"\n--- netspec check {' '.join(map(repr, case.args))} ---\n{outcome.err}{outcome.notes}"
    assert outcome.code == 2, f"exit {outcome.code}" + shown
    assert "Traceback" not in outcome.err and "internal error" not in outcome.err, shown
    located = [(m["file"], int(m["line"]), int(m["col"])) for m in _LOCATED.finditer(outcome.err)]
    assert located, "no `file:line:col: error:` line" + shown
    if case.at is not None:
        assert case.at in located, f"no diagnostic at {case.at[1]}:{case.at[2]}" + shown
    assert case.expect in outcome.err, f"`{case.expect}` not in stderr" + shown
    assert not _RAW_CONTROL.search(outcome.err), "a raw control character reached the terminal" + shown
    assert outcome.elapsed is not None and outcome.elapsed < CHECK_SECONDS, \
        f"the check took {outcome.elapsed} s (after {outcome.startup} s of imports)" + shown
    assert not outcome.torch, "`netspec check` imported torch" + shown


def test_corpus_is_large_and_every_file_states_its_expectation():
    assert len([c for c in CORPUS if not c.name.startswith("budget_")]) >= 35  # budget_*: another slice
    for path in HOSTILE.glob("*.yaml"):
        first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace").removeprefix("\ufeff")
        assert first.startswith("# expect: "), f"{path.name}: first line must be `# expect: TEXT`"
