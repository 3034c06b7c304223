"""`netspec train`: its own options here, the training settings' flags generated (train_flags.py).

With `--nproc N` this process is the launcher: it checks the settings once, makes the run
directory, and starts N workers through torch.distributed's launcher, each running this same
command line (`python -m netspec.cli train ...`, `--out` fixed, no `--nproc`). A worker knows it is
one from torchrun's environment (WORLD_SIZE, RANK) and joins the process group around its training.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from netspec.cli.options import MAX_NPROC
from netspec.cli.train_flags import settings_given, with_setting_flags

WORKER_MODULE = "netspec.cli"  # what each worker runs: `python -m netspec.cli train ...`
LAUNCHER_ONLY = ("--nproc", "--out")  # options the workers do not get (--out is given as the run made)


@with_setting_flags
def train(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help="the spec file"),
    *,
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<name>-<n>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the last run (or --out RUN_DIR)"),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="RUN_DIR or file.safetensors to start from, or torchvision:NAME "
        "(pretrained weights, e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1, from torch's cache in TORCH_HOME)"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    nproc: int = typer.Option(1, "--nproc", min=1, max=MAX_NPROC,
                              help="processes (DistributedDataParallel: gloo on CPU, NCCL on CUDA)"),
    **settings,
) -> None:
    """Train a spec: progress, per-epoch metrics, curves, checkpoints that survive a crash."""
    overrides = settings_given(settings)
    if nproc > 1:
        raise typer.Exit(launch_workers(ctx.obj.argv, spec, overrides, set_, nproc, out, resume, init_from))
    from netspec.train.distributed import process_group
    from netspec.train.loop import train as run_training

    with process_group():  # a worker joins its group; a single process has none
        run_training(spec, overrides, set_, out, resume, init_from)


def launch_workers(argv: list[str], spec: Path, overrides: dict, set_vars: list[str], nproc: int,
                   out: Path | None, resume: bool, init_from: str | None = None) -> int:
    """Check the settings once (bad flags: one error here, not one per worker), then run the workers
    (pretrained weights downloaded here, once, into the cache every worker reads)."""
    from netspec.compile.pretrained import fetch, is_pretrained, resolve
    from netspec.lang.spec import load
    from netspec.train.config import check_processes
    from netspec.train.distributed import launch
    from netspec.train.setup import resolve_config

    loaded = load(spec, overrides=set_vars)
    check_processes(resolve_config(loaded, overrides).batch_size, nproc)
    if is_pretrained(init_from) and not resume:
        fetch(resolve(init_from.split(":", 1)[1]))
    worker = ["-m", WORKER_MODULE, *without(argv[argv.index("train"):], *LAUNCHER_ONLY)]
    return launch(loaded.name, worker, nproc, out, resume)


def without(args: list[str], *options: str) -> list[str]:
    """`args` less `--opt value` and `--opt=value` for each option."""
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
