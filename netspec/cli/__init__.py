"""The `netspec` command line (the console script `netspec = netspec.cli:main`).

    app.py          the typer app, `main` (the entry point), the context each command gets
    conventions.py  what every command follows: -h, readable metavars, --version, shell completion
    commands.py     check, eval, export, infer, bench, schema
    train.py        train, and the `--nproc` launcher side
    train_flags.py  train's setting flags, generated from TrainConfig's fields
    options.py      bounds and parsers of the other options
    failures.py     the one formatter of every error, and the exit statuses
    docgen/         docs/spec-language.md, with the real `netspec check` output (`python -m netspec.cli.docgen`)

No library module imports this package; it imports the library.
"""

from netspec.cli.app import app, main

__all__ = ["app", "main"]
