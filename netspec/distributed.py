"""`netspec train --nproc N`: DistributedDataParallel through torch.distributed's launcher.

The launching process creates the run directory, then starts N workers with
`python -m torch.distributed.run --standalone --nproc_per_node N -m netspec.distributed ...`;
each worker runs the same `netspec train` (with `--out` fixed and without `--nproc`) and
joins the process group (gloo on CPU, NCCL on CUDA). Every worker sees the same global batch
order and takes its slice; rank 0 writes the run directory. The launcher holds the run's lock
(netspec.runlock); the workers know it by the pid in their environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def launch(spec: Path, argv: list[str], nproc: int, out: Path | None, set_vars: list[str], resume: bool) -> int:
    from netspec.rundir import new_run_dir, run_to_resume
    from netspec.runlock import launcher_env
    from netspec.spec import load

    name = load(spec, overrides=set_vars).name
    # The launcher holds the run's lock for the whole group; torchrun gets the descriptor too,
    # so the lock outlives a killed launcher while the workers still run.
    run_dir, lock = run_to_resume(name, out) if resume else new_run_dir(name, out)
    args = _without(argv[argv.index("train"):], "--nproc", "--out")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "netspec.distributed", *args, "--out", str(run_dir)]
    try:
        return subprocess.call(command, env=launcher_env(lock), pass_fds=(lock.fd,) if lock.held else ())
    finally:
        lock.release()


def _without(args: list[str], *options: str) -> list[str]:
    """Drop `--opt value` and `--opt=value` for each option."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in options:
            skip = True
        elif not any(arg.startswith(f"{o}=") for o in options):
            kept.append(arg)
    return kept


def init_process_group() -> None:
    """Join the group torchrun set up in the environment (no-op for a single process)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    import cli

    init_process_group()
    try:
        code = cli.main(sys.argv[1:])
    finally:
        shutdown()
    sys.exit(code)
