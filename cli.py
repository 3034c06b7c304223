"""The `netspec` command line. Each command parses options and calls one library function;
errors from the library are formatted in one place (`main`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative CNN specs: check shapes statically, train, export to ONNX, run.")
_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    _state["debug"] = debug


@app.command()
def check(
    spec: Path = typer.Argument(..., help="the spec file"),
    input: Optional[str] = typer.Option(None, "--input", help="override the input, e.g. 3x64x64 or 3xHxW"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Shapes, output-size formulas, params and MACs of every layer — static, no torch."""
    import netspec
    from netspec.render import print_report

    try:
        report = netspec.check(netspec.load(spec, overrides=set_, input=input))
    except netspec.SpecError as error:
        if error.partial_report is not None and not as_json:
            print_report(error.partial_report, title=f"{error.partial_report.name}: up to the error")
        raise
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print_report(report)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion)."""
    from netspec.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line each and exit 2; internal errors exit 1."""
    from netspec.errors import SpecError

    try:
        app(args=argv, prog_name="netspec")  # standalone: usage errors exit 2, success raises SystemExit(0)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except SpecError as error:
        if _state["debug"]:
            raise
        print(error.format(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — the one place internal errors are reported
        if _state["debug"]:
            raise
        print(f"internal error: {type(error).__name__}: {error} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
