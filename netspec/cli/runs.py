"""`netspec runs [DIR]`: the run directories in DIR (default ./runs) with their status, epochs,
best validation accuracy and date (netspec/train/status.py reads them)."""

from __future__ import annotations

from pathlib import Path

import typer


def runs(
    directory: Path = typer.Argument(Path("runs"), metavar="DIR",
                                     help="the folder the runs are in, or one run directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list, one object per run"),
) -> None:
    """List training runs, oldest first: finished, interrupted or running; epochs; best val accuracy; date."""
    from netspec.exporters.runtime import json_text
    from netspec.train.status import list_runs, table

    found = list_runs(directory)
    typer.echo(json_text([run.to_json() for run in found]) if as_json else table(found, directory))
