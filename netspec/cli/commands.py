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
from netspec.exporters import (  # light: the formats load on first use
    DEFAULT_CALIBRATION,
    FORMAT_MODULES,
    MAX_CALIBRATION,
    format_named,
)


def check(
    spec: Path = typer.Argument(..., help="the spec file"),
    input: Optional[str] = typer.Option(None, "--input", help="override the input, e.g. 3x64x64 or 3xHxW "
                                        "(default: the spec's `input:`)"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    include_root: Optional[Path] = typer.Option(
        None, "--include-root", help="folder `include:` may read from (default: the nearest folder "
        "above the spec with a netspec.toml, else the spec's own folder)"),
    wide: bool = typer.Option(False, "--wide", help="print every column in full, however wide the terminal"),
    depth: Optional[int] = typer.Option(None, "--depth", min=0, metavar="N",
                                        help="show blocks and macros down to N levels deep, each deeper one "
                                        "summed into one row (default: every row)"),
) -> None:
    """Shapes, output-size formulas, params and MACs of every layer — static, no torch."""
    import netspec
    from netspec.shapes.render import print_report

    if as_json and depth is not None:  # the JSON lists every layer; a fold it silently skipped would mislead
        raise OptionError.at(None, "--depth", "does not apply to --json, which lists every layer",
                             "fold in the consumer, or drop --json for the table")
    gc.disable()  # the spec's trees hold no cycles: collecting costs 20 % at 90,000 layers, frees nothing
    try:
        report = netspec.check(netspec.load(spec, overrides=set_, input=input, include_root=include_root))
    except netspec.SpecError as error:
        if error.partial_report is not None and not as_json:
            print_report(error.partial_report, title=f"{error.partial_report.name}: up to the error",
                         wide=wide, depth=depth)
        raise
    finally:
        gc.enable()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print_report(report, wide=wide, depth=depth)


def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory written by `netspec train`"),
    data: Optional[str] = typer.Option(None, "--data", help="evaluate on another dataset's validation split "
                                       "(default: the run's own)"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="where datasets are downloaded (default: "
                                            "the run's, else ~/.cache/netspec)"),
    weights: str = typer.Option("best", "--weights", metavar="best|last", help="which of the run's checkpoints"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=MAX_BATCH_SIZE, help="images per forward pass"),
) -> None:
    """Accuracy, per-class accuracy and the confusion matrix (text, and confusion.png in the run)."""
    check_weights(weights)  # before importing torch
    from netspec.train.evaluate import evaluate_run

    typer.echo("\n".join(evaluate_run(run_dir, data, data_root, weights, batch_size).lines()))


FORMATS = "|".join(sorted(FORMAT_MODULES))


def export(
    source: Path = typer.Argument(..., help="a spec (weights from its init:) or a run directory (trained weights)"),
    format_: Optional[str] = typer.Option(None, "--format", metavar=FORMATS,
                                          help="the file format (no default: give it, or --onnx)"),
    onnx: bool = typer.Option(False, "--onnx", help="the same as --format onnx"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="the file, or a directory to write <name>.<format> in "
                                               "(default: here, or in the run dir)"),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset version (default 18): 18–23 written by "
                                        "torch's exporter, 7–17 converted from 18 where onnx's version converter "
                                        "can (refused otherwise)"),
    batch: str = typer.Option("dynamic", "--batch", metavar="dynamic|N",
                              help=f"dynamic, or a fixed batch size N (1..{MAX_BATCH_SIZE})"),
    input: Optional[str] = typer.Option(None, "--input", help="for a spec: override its input, e.g. 3x64x64, or "
                                        "3xHxW for dynamic height and width (default: the spec's `input:`)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8|fp16", help="ONNX: int8 (static, "
                                           "calibrated on training images, accuracy checked) or fp16 (for GPUs); "
                                           "default: none, float32"),
    calibration: int = typer.Option(DEFAULT_CALIBRATION, "--calibration", min=1, max=MAX_CALIBRATION,
                                    help="--quantize int8: training images to calibrate on"),
    max_drop: float = typer.Option(1.0, "--max-drop", help="--quantize int8: refuse (exit 1, no file) when "
                                   "accuracy on the validation split drops by more than this many points"),
    weights: str = typer.Option("best", "--weights", metavar="best|last",
                                help="for a run directory: which of its checkpoints"),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="for a spec: torchvision:NAME, torchvision's pretrained weights "
        "(e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1, from torch's cache in TORCH_HOME); default: "
        "the spec's `init:` rules, seeded"),
    set_: List[str] = typer.Option([], "--set", help="for a spec: override a var: name=value (repeatable)"),
) -> None:
    """Export a model file, check it, and verify it against PyTorch (exit 1 if they differ)."""
    exporter = format_named(chosen_format(format_, onnx))
    options = export_options(exporter, batch, opset, quantize, calibration, max_drop)
    check_weights(weights)
    from netspec.run import load_source  # the format-neutral source: a spec or a run directory

    loaded = load_source(source, weights, input=input, init_from=init_from, set_vars=set_)
    for note in loaded.notes:
        typer.echo(note)
    if output is None:
        output = (source if source.is_dir() else Path(".")) / f"{loaded.name}{exporter.SUFFIX}"
    elif output.is_dir():  # -o DIR: <name>.<suffix> inside it, as `cp FILE DIR` would
        output = output / f"{loaded.name}{exporter.SUFFIX}"
    report = exporter.export(loaded, output, **options)
    typer.echo("\n".join(report.lines()))


def export_options(exporter, batch: str, opset, quantize, calibration: int, max_drop: float) -> dict:
    """The options this format is given, checked before anything is loaded; an option the format
    does not have (its OPTIONS) is an error naming the flag."""
    options = {"batch": None if batch == "dynamic" else batch_size(batch, "--batch", "`dynamic` or ")}
    if opset is not None:
        options["opset"] = opset
    if quantize is not None:
        options.update(quantize=quantize, calibration=calibration, max_drop=max_drop)
    for name in options:
        if name not in exporter.OPTIONS:
            flag = "--" + name.replace("_", "-")
            raise OptionError.at(None, flag, f"{flag} does not apply to --format {exporter.NAME}",
                                 f"formats that take it: {', '.join(formats_taking(name))}")
    if hasattr(exporter, "check_options"):
        exporter.check_options(**options)  # e.g. an opset no path writes, before loading anything
    return {k: v for k, v in options.items() if v is not None}


def formats_taking(option: str) -> list[str]:
    return [name for name in sorted(FORMAT_MODULES) if option in format_named(name).OPTIONS]


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
    model: Path = typer.Argument(..., help="a model file written by `netspec export` (.onnx, .pt2), or a run "
                                 "directory holding one"),
    inputs: List[Path] = typer.Argument(..., help="PNG/JPEG/... images or .npy arrays, folders of them "
                                        "(searched recursively), or quoted glob patterns such as 'digits/*.png'"),
    provider: str = typer.Option("auto", "--provider", metavar="NAME",
                                 help="where to run: auto, the best available, or tensorrt|cuda|cpu (a named one "
                                 "that cannot run is an error)"),
    top_k: int = typer.Option(5, "--top-k", min=1, max=MAX_TOP_K, help="classes per input (at most the model's)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=MAX_BATCH_SIZE,
                                   help="inputs per onnxruntime call (fewer when inputs are large)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list, one object per input"),
    trt_fp16: bool = typer.Option(False, "--trt-fp16", help="TensorRT: let it run layers in float16"),
    trt_cache: Optional[Path] = typer.Option(None, "--trt-cache", help="TensorRT: the engine cache folder "
                                             "(default: ~/.cache/netspec/tensorrt, per model file and precision)"),
) -> None:
    """Classify images with onnxruntime (or torch, for a .pt2), preprocessed exactly as in training."""
    from netspec.exporters import format_of_file
    from netspec.exporters.predict import expand_inputs, model_file, predict, table
    from netspec.exporters.runtime import json_text, printable

    model, notes = model_file(model)
    # the format its suffix names (.onnx, .pt2); any other name is read as ONNX, which says what is wrong
    reader = format_named(format_of_file(model) or "onnx")
    options = {"trt_fp16": True} if trt_fp16 else {}
    if trt_cache is not None:
        options["trt_cache"] = str(trt_cache)
    for name in options:
        if name not in getattr(reader, "RUNTIME_OPTIONS", ()):
            raise OptionError.at(None, "--" + name.replace("_", "-"), f"is for ONNX models run by onnxruntime, "
                                 f"not a {reader.SUFFIX} file")
    session = reader.load(model, provider, None, **options)
    for note in notes + session.notes:
        typer.echo(f"note: {printable(note)}", err=True)
    typer.echo(f"provider: {session.provider}", err=True)
    predictions, failures = predict(session, expand_inputs(inputs), top_k, batch_size)
    if as_json:
        typer.echo(json_text([p.to_json() for p in predictions]))
    elif predictions:
        typer.echo(table(predictions))
        for prediction in predictions:  # a dynamic-size model: why an image was resized
            if prediction.note:
                typer.echo(f"note: {printable(prediction.note)}", err=True)
    for failure in failures:  # each bad input its own line; the good ones were still predicted
        typer.echo(failure.format(), err=True)
    if failures:
        raise typer.Exit(2)


def bench(
    source: Path = typer.Argument(..., help="a spec, a run directory or a model file (.onnx, or any format "
                                  "`export --format` writes)"),
    batch: str = typer.Option("1,32", "--batch", metavar="N,N,...",
                              help=f"comma-separated batch sizes (at most {MAX_BENCH_BATCHES})"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=MAX_THREADS,
                                          help="threads for both sides (default: all cores)"),
    seconds: float = typer.Option(2.0, "--seconds",
                                  help=f"timing budget per backend and batch size (at most {MAX_BENCH_SECONDS:g})"),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="LIST", help="int8, fp16 or int8,fp16: "
                                           "rows for the quantized model beside float32's, with top-1 accuracy (a "
                                           "run: on its validation split) and agreement with float32; fp16 on a GPU "
                                           "only (default: float32 rows only)"),
    input: Optional[str] = typer.Option(None, "--input", help="a fixed input size for open axes, e.g. 3x224x224 "
                                        "(for a spec: overrides its input); default: the model's own, which "
                                        "must then be fixed"),
) -> None:
    """Latency and throughput: PyTorch eager vs onnxruntime (CPU, and CUDA/TensorRT when present)."""
    from netspec.exporters.bench import bench as run_bench
    from netspec.exporters.bench import table

    check_seconds(seconds, "--seconds")
    batches = batch_sizes(batch, "--batch")
    rows, notes = run_bench(source, batches, threads, seconds, quantize, input)
    typer.echo(table(rows))
    for note in notes:
        typer.echo(note)


def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion)."""
    from netspec.lang.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2, ensure_ascii=False))


def draw(
    spec: Path = typer.Argument(..., help="the spec file"),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", metavar="FILE", help="FILE.svg or FILE.html (the page: the picture at each depth, "
        "and the blocks as a collapsible outline), or a directory (default: <name>.svg here)"),
    depth: Optional[int] = typer.Option(
        None, "--depth", min=0, max=64, metavar="N", help="draw groups (blocks, macros, residuals, parallels) from "
        "this depth down as one box with their subtotal; 0: only the top-level items (default: all open)"),
    input: Optional[str] = typer.Option(None, "--input", help="override the input, e.g. 3x64x64 or 3xHxW "
                                        "(default: the spec's `input:`)"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    include_root: Optional[Path] = typer.Option(None, "--include-root", help="folder `include:` may read from "
                                                "(default as for check: the nearest folder above the spec with "
                                                "a netspec.toml, else the spec's own folder)"),
) -> None:
    """The network as a picture (SVG or HTML): each layer's output shape and params, blocks as groups."""
    import netspec
    from netspec.draw import SUFFIXES, write

    if output is not None and not output.is_dir() and output.suffix.lower() not in SUFFIXES:
        raise OptionError.at(None, "-o", f"{ascii(output.name)[1:-1][:60]} must end in .svg or .html",
                             "e.g. -o net.svg, or -o net.html for the page")
    report = netspec.check(netspec.load(spec, overrides=set_, input=input, include_root=include_root))
    if output is None:
        output = Path(".") / f"{report.name}.svg"
    elif output.is_dir():
        output = output / f"{report.name}.svg"
    try:
        boxes = write(report, output, depth)
    except OSError as error:  # a folder that does not exist, no permission, a full disk
        raise OptionError.at(None, "-o", f"cannot write {ascii(str(output))[1:-1][:200]}: "
                             f"{error.strerror or error}") from None
    typer.echo(f"wrote {output}: {boxes:,} boxes, {report.params:,} params" if isinstance(report.params, int)
               else f"wrote {output}: {boxes:,} boxes")
