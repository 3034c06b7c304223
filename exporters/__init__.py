"""Export formats, as a registry: each format is one module here providing the same three things.

    NAME, SUFFIX                        # "onnx", ".onnx"
    OPTIONS                             # the export options it takes: {"batch", "opset", ...}
    export(source, out, **options)      # write, check and verify a file; returns a report with .lines()
    load(path, provider="auto", threads=None)   # the file as a runtime: .run(batch) -> scores, .card
    verify(path, source, batch)         # the file against eager PyTorch on the same inputs
    check_options(**options)            # optional: refuse an option's value before anything is loaded

`netspec export SOURCE --format NAME` (netspec/cli/commands.py) picks the module by name; `--onnx`
is the same as `--format onnx`.

Installed as `netspec.exporters` (pyproject.toml maps this folder under the `netspec` name).
Adding a format is a module here plus one line in FORMAT_MODULES.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from netspec.errors import OptionError

# `--quantize int8`: training images calibrated on by default, and at most (each is a forward pass
# of the float model with every activation recorded)
DEFAULT_CALIBRATION = 256
MAX_CALIBRATION = 10_000

# name → module; imported on first use so `netspec check` never pays for onnx or torch.export
FORMAT_MODULES = {"onnx": "netspec.exporters.onnx", "pt2": "netspec.exporters.pt2"}


def format_named(name: str, option: str = "--format") -> ModuleType:
    """The exporter module for `name`; an unknown name is an error naming the option."""
    if name not in FORMAT_MODULES:
        raise OptionError.at(None, option, f"unknown format {ascii(name)[1:-1][:40]!r}",
                             f"choose one of: {', '.join(sorted(FORMAT_MODULES))}")
    return importlib.import_module(FORMAT_MODULES[name])


def format_of_file(path) -> str | None:
    """The registered format whose suffix the file has (None when no format claims it)."""
    suffix = str(path).lower()
    for name in FORMAT_MODULES:
        if suffix.endswith(format_named(name).SUFFIX):
            return name
    return None
