"""The commands other than `train` (netspec/cli/train.py): each parses its options and calls one
library function; their errors reach the one formatter (netspec/cli/failures.py)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import List, Optional

import typer

from netspec.cli.options import (
    MAX_BATCH_SIZE,
    MAX_BENCH_BATCHES,
    MAX_BENCH_SECONDS,
    MAX_THREADS,
    MAX_TOP_K,
    batch_size,
    batch_sizes,
    check_seconds,
    check_weights,
)
from netspec.errors import OptionError
from netspec.exporters import FORMAT_MODULES, format_named  # light: the formats load on first use


def check(
    spec: Path = typer.Argument(..., help="the spec file"),
    input: Optional[str] = typer.Option(None, "--input", help="override the input, e.g. 3x64x64 or 3xHxW"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    include_root: Optional[Path] = typer.Option(
        None, "--include-root", help="folder `include:` may read from (default: the nearest folder "
        "above the spec with a netspec.toml, else the spec's own folder)"),
) -> None:
    """Shapes, output-size formulas, params and MACs of every layer — static, no torch."""
    import netspec
    from netspec.shapes.render import print_report

    gc.disable()  # the spec's trees hold no cycles: collecting costs 20 % at 90,000 layers, frees nothing
    try:
        report = netspec.check(netspec.load(spec, overrides=set_, input=input, include_root=include_root))
    except netspec.SpecError as error:
        if error.partial_report is not None and not as_json:
            print_report(error.partial_report, title=f"{error.partial_report.name}: up to the error")
        raise
    finally:
        gc.enable()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print_report(report)


def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory written by `netspec train`"),
    data: Optional[str] = typer.Option(None, "--data", help="evaluate on another dataset's validation split"),
    data_root: Optional[str] = typer.Option(None, "--data-root"),
    weights: str = typer.Option("best", "--weights", help="best|last"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=MAX_BATCH_SIZE),
) -> None:
    """Accuracy, per-class accuracy and the confusion matrix (text, and confusion.png in the run)."""
    check_weights(weights)  # before importing torch
    from netspec.train.evaluate import evaluate_run

    typer.echo("\n".join(evaluate_run(run_dir, data, data_root, weights, batch_size).lines()))


FORMATS = "|".join(sorted(FORMAT_MODULES))


def export(
    source: Path = typer.Argument(..., help="a spec (weights from its init:) or a run directory (trained weights)"),
    format_: Optional[str] = typer.Option(None, "--format", help=f"the file format: {FORMATS}"),
    onnx: bool = typer.Option(False, "--onnx", help="the same as --format onnx"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="the file, or a directory to write <name>.<format> in "
                                               "(default: here, or in the run dir)"),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version: 18–23 written by torch's exporter, 7–17 "
                              "converted from 18 where onnx's version converter can (refused otherwise)"),
    batch: str = typer.Option("dynamic", "--batch", help=f"dynamic, or a fixed batch size N (1..{MAX_BATCH_SIZE})"),
    weights: str = typer.Option("best", "--weights", help="for a run directory: best|last"),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="for a spec: torchvision:NAME, torchvision's pretrained weights "
        "(e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1, from torch's cache in TORCH_HOME)"),
    set_: List[str] = typer.Option([], "--set", help="for a spec: override a var: name=value (repeatable)"),
) -> None:
    """Export (ONNX so far), check the file, and verify it against PyTorch (exit 1 if they differ)."""
    exporter = format_named(chosen_format(format_, onnx))
    if hasattr(exporter, "check_opset"):
        exporter.check_opset(opset)  # before loading anything: an opset no path here writes
    fixed = None if batch == "dynamic" else batch_size(batch, "--batch", "`dynamic` or ")
    check_weights(weights)
    from netspec.run import load_source  # the format-neutral source: a spec or a run directory

    loaded = load_source(source, weights, init_from=init_from, set_vars=set_)
    for note in loaded.notes:
        typer.echo(note)
    if output is None:
        output = (source if source.is_dir() else Path(".")) / f"{loaded.name}{exporter.SUFFIX}"
    elif output.is_dir():  # -o DIR: <name>.<suffix> inside it, as `cp FILE DIR` would
        output = output / f"{loaded.name}{exporter.SUFFIX}"
    report = exporter.export(loaded, output, opset=opset, batch=fixed or "dynamic")
    typer.echo("\n".join(report.lines()))


def chosen_format(name: str | None, onnx: bool) -> str:
    """The format named by `--format NAME`, or by `--onnx` (its synonym for `--format onnx`)."""
    if name is None and not onnx:
        others = sorted(set(FORMAT_MODULES) - {"onnx"})
        hint = f"or --format NAME: {', '.join(others)}" if others else "the only format so far"
        raise OptionError.at(None, "export", "choose a format: --onnx", hint)
    if onnx and name not in (None, "onnx"):
        raise OptionError.at(None, "--format", f"--onnx and --format {ascii(name)[1:-1][:40]} disagree",
                             "give one of them")
    return "onnx" if name is None else name


def infer(
    model: Path = typer.Argument(..., help="an .onnx file written by `netspec export`, or a run directory holding one"),
    inputs: List[Path] = typer.Argument(..., help="PNG/JPEG/... images or .npy arrays, folders of them "
                                        "(searched recursively), or quoted glob patterns such as 'digits/*.png'"),
    provider: str = typer.Option("auto", "--provider", help="auto|tensorrt|cuda|cpu (auto: the best available; "
                                 "a named one that cannot run is an error)"),
    top_k: int = typer.Option(5, "--top-k", min=1, max=MAX_TOP_K, help="classes per input (at most the model's)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=MAX_BATCH_SIZE,
                                   help="inputs per onnxruntime call (fewer when inputs are large)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list, one object per input"),
) -> None:
    """Classify images with onnxruntime, preprocessed exactly as in training."""
    from netspec.exporters.predict import expand_inputs, model_file, predict, table
    from netspec.exporters.runtime import OnnxModel, json_text, printable

    model, notes = model_file(model)
    session = OnnxModel(model, provider)
    for note in notes + session.notes:
        typer.echo(f"note: {printable(note)}", err=True)
    typer.echo(f"provider: {session.provider}", err=True)
    predictions, failures = predict(session, expand_inputs(inputs), top_k, batch_size)
    if as_json:
        typer.echo(json_text([p.to_json() for p in predictions]))
    elif predictions:
        typer.echo(table(predictions))
    for failure in failures:  # each bad input its own line; the good ones were still predicted
        typer.echo(failure.format(), err=True)
    if failures:
        raise typer.Exit(2)


def bench(
    source: Path = typer.Argument(..., help="a spec, a run directory or an .onnx file"),
    batch: str = typer.Option("1,32", "--batch", help=f"comma-separated batch sizes (at most {MAX_BENCH_BATCHES})"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=MAX_THREADS,
                                          help="threads for both sides (default: all cores)"),
    seconds: float = typer.Option(2.0, "--seconds",
                                  help=f"timing budget per backend and batch size (at most {MAX_BENCH_SECONDS:g})"),
) -> None:
    """Latency and throughput: PyTorch eager vs onnxruntime (CPU, and CUDA/TensorRT when present)."""
    from netspec.exporters.bench import bench as run_bench
    from netspec.exporters.bench import table

    check_seconds(seconds, "--seconds")
    batches = batch_sizes(batch, "--batch")
    rows, notes = run_bench(source, batches, threads, seconds)
    typer.echo(table(rows))
    for note in notes:
        typer.echo(note)


def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion)."""
    from netspec.lang.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2, ensure_ascii=False))
