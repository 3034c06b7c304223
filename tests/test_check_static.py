"""`check` is static: it never imports torch and never allocates weights."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import netspec
from tests.conftest import ROOT, spec_files

HUGE = """
name: huge
input: [1000000]
layers:
  - linear: 1000000
  - relu
  - linear: 1000000
"""


def test_check_never_imports_torch():
    specs = [str(p) for p in spec_files()]
    program = textwrap.dedent(f"""
        import sys, contextlib, io
        from netspec import cli
        for spec in {specs!r}:
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(["check", spec]) == 0, spec
                assert cli.main(["check", spec, "--json"]) == 0, spec
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision", "onnx")))
        print("LOADED", loaded)
    """)
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_a_two_trillion_parameter_spec_checks_without_allocating():
    tracemalloc.start()
    report = netspec.check(netspec.loads(HUGE, "huge.yaml"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.params == 2 * (10**12 + 10**6)
    assert peak < 5 * 2**20  # bytes: the weights alone would be 8 TB
