"""A run survives SIGKILL at any point, including in the middle of a checkpoint write, and
Ctrl-C; `--resume` then finishes it with weights bit-identical to an uninterrupted run (CPU,
fixed seed)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from netspec.train.checkpoint import load_state, read_metadata
from tests.conftest import ROOT, SPECS

ARGS = ["train", str(SPECS / "lenet.yaml"), "--data", "digits", "--epochs", "4", "--checkpoint-every", "10"]


class Run:
    """`netspec train` in a child process whose output lines we can wait for."""

    def __init__(self, out, *extra: str, pause: float | None = None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NETSPEC_CHECKPOINT_PAUSE", None)
        if pause:
            env["NETSPEC_CHECKPOINT_PAUSE"] = str(pause)
        self.process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *ARGS, "--out", str(out), *extra],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.seen) < count:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, "".join(self.seen)
            self.seen.append(line)

    def kill(self, signum=signal.SIGKILL) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return code


def assert_checkpoint_loads(run_dir):
    meta = read_metadata(run_dir / "last.safetensors")
    weights = load_file(run_dir / "last.safetensors")
    assert weights and all(torch.isfinite(w.float()).all() for w in weights.values())
    optimizer, rng, counters = load_state(run_dir / meta["state"])
    assert counters["global_step"] > 0 and "torch" in rng and optimizer["state"]


@pytest.mark.slow
def test_killed_and_interrupted_runs_resume_to_identical_weights(tmp_path):
    reference = Run(tmp_path / "reference")
    assert reference.process.wait(timeout=300) == 0

    run_dir = tmp_path / "crashed"
    # 1. SIGKILL with last.safetensors fully written to its temporary file, not yet renamed
    run = Run(run_dir, pause=3)
    run.wait_for("last.safetensors written to", count=2)
    assert run.kill() == -signal.SIGKILL
    assert any(p.name.startswith(".last.safetensors.tmp-") for p in run_dir.iterdir())
    assert_checkpoint_loads(run_dir)
    # 2. SIGKILL while a trainer-state file is being written, after resuming
    run = Run(run_dir, "--resume", pause=3)
    run.wait_for("resuming")
    run.wait_for("state-", count=2)
    assert run.kill() == -signal.SIGKILL
    assert_checkpoint_loads(run_dir)
    # 3. SIGKILL at an ordinary moment, in the middle of an epoch
    run = Run(run_dir, "--resume")
    run.wait_for("epoch   1/4")  # no sleep: a digits epoch takes ~0.1 s, the run could finish before it
    run.kill()
    assert_checkpoint_loads(run_dir)
    # 4. Ctrl-C: saves where it is and says how to continue
    run = Run(run_dir, "--resume")
    run.wait_for("digits: resized")  # the banner's last line: Ctrl-C is handled from before it
    assert run.kill(signal.SIGINT) == 130, "".join(run.seen)
    assert "interrupted: saved" in "".join(run.seen) and "--resume" in "".join(run.seen)
    assert_checkpoint_loads(run_dir)
    # 5. resume to the end
    run = Run(run_dir, "--resume")
    assert run.process.wait(timeout=300) == 0, "".join(run.seen)

    ours, theirs = load_file(run_dir / "last.safetensors"), load_file(tmp_path / "reference" / "last.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "resumed weights differ from the uninterrupted run"
    epochs = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 4
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]
