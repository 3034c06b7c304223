"""`netspec train --nproc N`: DistributedDataParallel through torch.distributed's launcher.

The launching process creates the run directory, then starts N workers with
`python -m torch.distributed.run --standalone --nproc_per_node N WORKER... --out RUN_DIR`, where
the caller names the worker's command line (the CLI gives its own `-m netspec.cli train ...`, with
`--out` fixed and without `--nproc`). Each worker joins the process group (gloo on CPU, NCCL on CUDA)
through `process_group()`. Every worker sees the same global batch order and takes its slice; rank 0
writes the run directory. The launcher holds the run's lock (netspec.train.runlock); the workers
know it by the pid in their environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch


def launch(name: str, worker: list[str], nproc: int, out: Path | None, resume: bool) -> int:
    """Make (or, resuming, find) the run directory of the spec `name`, run `nproc` workers in it and
    return torchrun's exit status; `worker` is the command line after `python` (`-m module args...`)."""
    from netspec.train.rundir import new_run_dir, run_to_resume
    from netspec.train.runlock import launcher_env

    # The launcher holds the run's lock for the whole group; torchrun gets the descriptor too,
    # so the lock outlives a killed launcher while the workers still run.
    run_dir, lock = run_to_resume(name, out) if resume else new_run_dir(name, out)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *worker, "--out", str(run_dir)]
    try:
        return subprocess.call(command, env=launcher_env(lock), pass_fds=(lock.fd,) if lock.held else ())
    finally:
        lock.release()


def init_process_group() -> None:
    """Join the group torchrun set up in the environment (no-op for a single process)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group() -> Iterator[None]:
    """In the group torchrun set up for the duration (nothing for a single process), left even on an error."""
    init_process_group()
    try:
        yield
    finally:
        shutdown()
