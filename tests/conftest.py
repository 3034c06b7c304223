"""Shared test helpers: run the CLI in-process and locate the repository's files.

The suite is isolated from the machine it runs on, so that two suites (two clones, or the same
clone twice) can run at once: `pytest_configure` points HOME and every cache netspec, torch,
matplotlib and hypothesis use at one fresh temporary folder per session, before any test module
imports netspec (netspec.data resolves `~/.cache/netspec` at import time). Subprocesses inherit
it. Nothing writes into the repository or the working directory; runs use `tmp_path`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

_SESSION_HOME: Path | None = None
_ISOLATED = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TORCH_HOME", "MPLCONFIGDIR")


def pytest_configure(config):
    global _SESSION_HOME
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="netspec-tests-"))
    for name in _ISOLATED:
        folder = _SESSION_HOME if name == "HOME" else _SESSION_HOME / name.lower()
        folder.mkdir(exist_ok=True)
        os.environ[name] = str(folder)
    # hypothesis keeps its example database in ./.hypothesis unless told otherwise: shared
    # between two suites in one clone; the property tests are derandomized, so none is needed.
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(_SESSION_HOME / "hypothesis")


def pytest_unconfigure(config):
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)

def nontrivial_batchnorm(model):
    """`model` with every BatchNorm2d's statistics and affine weights drawn at random (torch's
    generator), so eval mode exercises every tensor a weight copy must carry; returns the model."""
    import torch.nn as nn

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def spec_files() -> list[Path]:
    """Every runnable spec shipped under specs/ (blocks-only include files excluded)."""
    return sorted(p for p in SPECS.rglob("*.yaml") if "blocks" not in p.relative_to(SPECS).parts)


def lenet_digits_run(tmp_path_factory, folder: str, epochs: int) -> Path:
    """specs/lenet.yaml trained on the digits for `epochs` into a new temporary folder: the real run
    that module-scoped fixtures of the export, infer and bench tests share within their module."""
    from netspec.train.loop import train

    out = tmp_path_factory.mktemp(folder) / "lenet"
    train(SPECS / "lenet.yaml", {"data": "digits", "epochs": epochs}, out=out)
    return out


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `netspec ARGS...` in this process; returns exit code, stdout and stderr."""
    from netspec import cli as cli_module

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
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
