"""`netspec train`: its own options here, the training settings' flags generated (train_flags.py).

With `--nproc N` (or `--nnodes`, `--max-restarts`) this process is the launcher: it checks the
settings once, makes the run directory (on node 0), and starts N workers through torch.distributed's
launcher, each running this same command line (`python -m netspec.cli train ...`, `--out` fixed, no
launcher options). A worker knows it is one from its launcher's environment (torchrun's RANK and
WORLD_SIZE, or SLURM's), joins the process group around its training, and trains the run rank 0
settles (netspec/train/distributed.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from netspec.cli.options import MAX_NPROC
from netspec.cli.train_flags import settings_given, with_setting_flags
from netspec.train.distributed import DEFAULT_PORT, MAX_NNODES, MAX_RESTARTS, Nodes

WORKER_MODULE = "netspec.cli"  # what each worker runs: `python -m netspec.cli train ...`
# Options the workers do not get (--out is given as the run made, on node 0).
LAUNCHER_ONLY = ("--nproc", "--out", "--nnodes", "--node-rank", "--master-addr", "--master-port", "--max-restarts")


@with_setting_flags
def train(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help="the spec file"),
    *,
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<name>-<n>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the last run (or --out RUN_DIR)"),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="RUN_DIR or file.safetensors to start from, or torchvision:NAME "
        "(pretrained weights, e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1, from torch's cache in TORCH_HOME); "
        "default: fresh weights, from the spec's `init:` rules and --seed"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    nproc: int = typer.Option(1, "--nproc", min=1, max=MAX_NPROC,
                              help="processes on this machine (DistributedDataParallel: gloo on CPU, NCCL on CUDA)"),
    nnodes: int = typer.Option(1, "--nnodes", min=1, max=MAX_NNODES,
                               help="machines, each running this command with its own --node-rank (c10d rendezvous)"),
    node_rank: int = typer.Option(0, "--node-rank", min=0, max=MAX_NNODES - 1,
                                  help="this machine's number, 0 to --nnodes - 1; node 0 writes the run directory"),
    master_addr: Optional[str] = typer.Option(None, "--master-addr", metavar="HOST",
                                              help="node 0's host name or address (needed with --nnodes > 1; "
                                              "default: none, one machine's own rendezvous)"),
    master_port: int = typer.Option(DEFAULT_PORT, "--master-port", min=1, max=65535,
                                    help="the rendezvous port on node 0 (the same on every machine)"),
    max_restarts: int = typer.Option(0, "--max-restarts", min=0, max=MAX_RESTARTS,
                                     help="restart the workers up to N times after a failure; each restart "
                                     "resumes from the run's last checkpoint"),
    **settings,
) -> None:
    """Train a spec: progress, per-epoch metrics, curves, checkpoints that survive a crash."""
    overrides = settings_given(settings)
    nodes = Nodes(nproc, nnodes, node_rank, master_addr, master_port, max_restarts)
    nodes.check()
    if nodes.launches:
        raise typer.Exit(launch_workers(ctx.obj.argv, spec, overrides, set_, nodes, out, resume, init_from))
    from netspec.train.distributed import joined_run, process_group
    from netspec.train.loop import train as run_training

    # A worker joins its group (a single process has none), then trains the run rank 0 settles.
    with process_group() as group, joined_run(group, spec, set_, out, resume, init_from) as run:
        run_training(spec, overrides, set_, run.out, run.resume, run.init_from)


def launch_workers(argv: list[str], spec: Path, overrides: dict, set_vars: list[str], nodes: Nodes,
                   out: Path | None, resume: bool, init_from: str | None = None) -> int:
    """Check the settings once (bad flags: one error here, not one per worker), then run the workers
    (pretrained weights downloaded here, once, into the cache every worker reads)."""
    from netspec.compile.pretrained import fetch, is_pretrained, resolve
    from netspec.lang.spec import load
    from netspec.train.config import check_processes
    from netspec.train.distributed import launch
    from netspec.train.setup import resolve_config

    loaded = load(spec, overrides=set_vars)
    check_processes(resolve_config(loaded, overrides).batch_size, nodes.world)
    if is_pretrained(init_from) and not resume:
        fetch(resolve(init_from.split(":", 1)[1]))
    worker = ["-m", WORKER_MODULE, *without(argv[argv.index("train"):], *LAUNCHER_ONLY)]
    return launch(loaded.name, worker, nodes, out, resume)


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
