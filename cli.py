"""Run netspec from a checkout without installing: `python cli.py check specs/lenet.yaml`.

The command-line interface lives in `netspec/cli/`; the installed console script is `netspec`.
"""

from netspec.cli import app, main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
