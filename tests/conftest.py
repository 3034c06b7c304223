"""Shared test helpers: run the CLI in-process and locate the repository's files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def spec_files() -> list[Path]:
    """Every runnable spec shipped under specs/ (blocks-only include files excluded)."""
    return sorted(p for p in SPECS.rglob("*.yaml") if "blocks" not in p.relative_to(SPECS).parts)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `netspec ARGS...` in this process; returns exit code, stdout and stderr."""
    import cli as cli_module

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        cli_module._state["debug"] = False
        code = cli_module.main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    # rich tables must not wrap formulas in assertions about output text
    monkeypatch.setenv("COLUMNS", "240")
    monkeypatch.delenv("NETSPEC_DEBUG", raising=False)
    yield
