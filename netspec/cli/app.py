"""The `netspec` command line: the typer app, its commands, and `main`, the one entry point.

Each command parses options and calls one library function (netspec/cli/commands.py, train.py);
every failure reaches `main`, which formats it in one place (netspec/cli/failures.py). What one
call of `main` knows besides a command's own options (--debug, the command line) travels in the
typer context's `obj`, not in module state, so calls in one process are independent.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import typer

from netspec.cli import commands
from netspec.cli.conventions import INSTALL_COMPLETION, SHOW_COMPLETION, VERSION, App, Shells
from netspec.cli.failures import report_failure
from netspec.cli.runs import runs
from netspec.cli.train import train


@dataclass
class Invocation:
    """One run of the command line: ctx.obj for every command."""

    argv: list[str]
    debug: bool = False


# App: -h, readable metavars and completion for every command (netspec/cli/conventions.py); typer's
# own completion options would print the detected shell's script, not the one named. Plain help
# (rich_markup_mode=None): typer's boxed table leaves 17 columns of help at 80; a usage error is one line.
app = App(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
          help="Declarative CNN specs: check shapes statically, train, export to ONNX, run.")


@app.callback()
def _options(ctx: typer.Context,
             debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors"),
             version: bool = VERSION, show_completion: Optional[Shells] = SHOW_COMPLETION,
             install_completion: Optional[Shells] = INSTALL_COMPLETION) -> None:
    if ctx.obj is None:  # the app called without `main` (e.g. typer's test runner)
        ctx.obj = Invocation(sys.argv[1:])
    ctx.obj.debug = debug


app.command()(commands.check)
app.command()(train)
app.command(name="eval")(commands.evaluate)
app.command()(commands.export)
app.command()(commands.infer)
app.command()(commands.bench)
app.command()(commands.schema)
app.command()(commands.draw)
app.command()(runs)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line each and exit 2; internal errors exit 1."""
    invocation = Invocation(list(sys.argv[1:] if argv is None else argv))
    try:
        # standalone: usage errors exit 2, success raises SystemExit(0)
        app(args=invocation.argv, prog_name="netspec", obj=invocation)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException as error:  # noqa: BLE001 — the one place failures are reported
        return report_failure(error, invocation.debug)
    return 0
