"""`netspec train --nproc 2` (DistributedDataParallel, gloo on CPU) takes the same steps as one
process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.conftest import ROOT, SPECS

# 1 epoch of digits at global batch 256 = 5 optimiser steps; SGD, no augmentation, no BatchNorm
# (per-process batch statistics would legitimately differ), so the two runs must agree.
ARGS = ["train", str(SPECS / "lenet.yaml"), "--data", "digits", "--epochs", "1", "--batch-size", "256",
        "--optimizer", "sgd", "--lr", "0.05", "--pad", "0"]


def run(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *ARGS, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    one = run("--out", str(single))
    assert one.returncode == 0, one.stderr
    two = run("--out", str(double), "--nproc", "2")
    assert two.returncode == 0, two.stdout + two.stderr
    assert "×2 processes" in two.stdout
    ours, theirs = load_file(double / "last.safetensors"), load_file(single / "last.safetensors")
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) <= 1e-5
    # rank 0 alone wrote the run directory, with the whole epoch's metrics
    record = json.loads((double / "metrics.jsonl").read_text())
    assert record["epoch"] == 1 and 0 <= record["train_acc"] <= 1
    assert len([p for p in double.glob("state-*.safetensors")]) == 1
