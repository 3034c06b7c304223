"""The `netspec` command line. Each command parses options and calls one library function;
errors from the library are formatted in one place (`main`)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from netspec.config import MAX_BATCH_SIZE  # one bound for every batch option, training's included
from netspec.errors import SpecError  # noqa: E402 (light: no torch)

# Bounds on the options that are not training settings (those live in netspec/config.py, so a
# spec's `train:` section gets them too). Typer reports a value outside them as a usage error
# naming the option (exit 2).
MAX_NPROC = 64  # `train --nproc`: each process is a whole Python + torch (~0.5 GB) on this machine
THREADS_PER_CORE = 4  # `bench --threads`: past a few per core it measures contention; 100,000 crashed ORT
MAX_THREADS = THREADS_PER_CORE * (os.cpu_count() or 1)
MAX_BENCH_SECONDS = 600.0  # `bench --seconds`, per backend and batch size: a hang above this is a typo
MAX_BENCH_BATCHES = 16  # `bench --batch` sizes: each one costs --seconds per backend
MAX_TOP_K = 100_000  # `infer --top-k` (clamped to the model's classes): a bound on the JSON's size
WEIGHTS = ("best", "last")  # the checkpoint names a run directory holds

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
    include_root: Optional[Path] = typer.Option(
        None, "--include-root", help="folder `include:` may read from (default: the nearest folder "
        "above the spec with a netspec.toml, else the spec's own folder)"),
) -> None:
    """Shapes, output-size formulas, params and MACs of every layer — static, no torch."""
    import netspec
    from netspec.render import print_report

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


@app.command()
def train(
    spec: Path = typer.Argument(..., help="the spec file"),
    data: Optional[str] = typer.Option(None, "--data", help="mnist|fashion_mnist|cifar10|cifar100|digits|folder:PATH|synthetic"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="dataset directory (default ~/.cache/netspec)"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="global batch size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd|adam|adamw"),
    momentum: Optional[float] = typer.Option(None, "--momentum"),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (sgd with momentum > 0)"),
    weight_decay: Optional[float] = typer.Option(
        None, "--weight-decay", help="default: the optimizer's own (0 for sgd and adam, 0.01 for adamw)"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="none|step|cosine|onecycle|warmup"),
    step_size: Optional[int] = typer.Option(None, "--step-size", help="--schedule step: epochs between decays (default 30)"),
    gamma: Optional[float] = typer.Option(None, "--gamma", help="--schedule step: decay factor (default 0.1)"),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs"),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing"),
    pad: Optional[int] = typer.Option(None, "--pad", help="augment: pad then random-crop (CIFAR: 4)"),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="augment: random horizontal flip"),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="normalise with the data's mean/std"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto|cpu|cuda"),
    amp: Optional[str] = typer.Option(None, "--amp", help="none|bf16|fp16 (fp16 needs CUDA)"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last"),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model"),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader workers (image folders)"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="also checkpoint every N steps"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<name>-<n>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the last run (or --out RUN_DIR)"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="RUN_DIR or file.safetensors to start from"),
    set_: List[str] = typer.Option([], "--set", help="override a var: name=value (repeatable)"),
    nproc: int = typer.Option(1, "--nproc", min=1, max=MAX_NPROC,
                              help="processes (DistributedDataParallel: gloo on CPU, NCCL on CUDA)"),
) -> None:
    """Train a spec: progress, per-epoch metrics, curves, checkpoints that survive a crash."""
    augment = {k: v for k, v in (("pad", pad), ("flip", flip), ("normalize", normalize)) if v is not None}
    overrides = {k: v for k, v in dict(
        data=data, data_root=data_root, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
        momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, schedule=schedule, step_size=step_size,
        gamma=gamma, warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing, seed=seed, device=device, amp=amp, channels_last=channels_last,
        compile=compile_, workers=workers, checkpoint_every=checkpoint_every).items() if v is not None}
    if augment:
        overrides["augment"] = augment
    if nproc > 1:
        from netspec.config import check_processes
        from netspec.distributed import launch
        from netspec.spec import load
        from netspec.training_setup import resolve_config

        config = resolve_config(load(spec, overrides=set_), overrides)  # bad flags: one error here, not one per worker
        check_processes(config.batch_size, nproc)
        raise typer.Exit(launch(spec, sys.argv, nproc, out, set_, resume))
    from netspec.trainer import train as run_training

    run_training(spec, overrides, set_, out, resume, init_from)


@app.command(name="eval")
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory written by `netspec train`"),
    data: Optional[str] = typer.Option(None, "--data", help="evaluate on another dataset's validation split"),
    data_root: Optional[str] = typer.Option(None, "--data-root"),
    weights: str = typer.Option("best", "--weights", help="best|last"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=MAX_BATCH_SIZE),
) -> None:
    """Accuracy, per-class accuracy and the confusion matrix (text, and confusion.png in the run)."""
    from netspec.evaluate import evaluate_run

    _check_weights(weights)
    evaluate_run(run_dir, data, data_root, weights, batch_size)


@app.command()
def export(
    source: Path = typer.Argument(..., help="a spec (weights from its init:) or a run directory (trained weights)"),
    onnx: bool = typer.Option(False, "--onnx", help="export to ONNX (the one format so far)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="the .onnx file, or a directory to write <name>.onnx in "
                                               "(default: here, or in the run dir)"),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version: 18–23 written by torch's exporter, 7–17 "
                              "converted from 18 where onnx's version converter can (refused otherwise)"),
    batch: str = typer.Option("dynamic", "--batch", help=f"dynamic, or a fixed batch size N (1..{MAX_BATCH_SIZE})"),
    weights: str = typer.Option("best", "--weights", help="for a run directory: best|last"),
) -> None:
    """Export to ONNX, check the file, and verify onnxruntime against PyTorch (exit 1 if they differ)."""
    if not onnx:
        raise SpecError.at(None, "export", "choose a format: --onnx", "the only format so far")
    from exporters.onnx import check_opset, export_onnx, load_source

    check_opset(opset)  # before loading anything: an opset no path here writes
    fixed = None if batch == "dynamic" else _batch_size(batch, "--batch", "`dynamic` or ")
    _check_weights(weights)
    loaded = load_source(source, weights)
    if output is None:
        output = (source if source.is_dir() else Path(".")) / f"{loaded.name}.onnx"
    elif output.is_dir():  # -o DIR: <name>.onnx inside it, as `cp FILE DIR` would
        output = output / f"{loaded.name}.onnx"
    report = export_onnx(loaded, output, opset, fixed or "dynamic")
    typer.echo("\n".join(report.lines()))


@app.command()
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
    from exporters.infer import expand_inputs, model_file, predict, table
    from exporters.runtime import OnnxModel, json_text, printable

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


@app.command()
def bench(
    source: Path = typer.Argument(..., help="a spec, a run directory or an .onnx file"),
    batch: str = typer.Option("1,32", "--batch", help=f"comma-separated batch sizes (at most {MAX_BENCH_BATCHES})"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=MAX_THREADS,
                                          help="threads for both sides (default: all cores)"),
    seconds: float = typer.Option(2.0, "--seconds", help=f"timing budget per backend and batch size (at most {MAX_BENCH_SECONDS:g})"),
) -> None:
    """Latency and throughput: PyTorch eager vs onnxruntime (CPU, and CUDA/TensorRT when present)."""
    from exporters.bench import bench as run_bench, table

    if not 0 < seconds <= MAX_BENCH_SECONDS:  # also refuses nan
        raise SpecError.at(None, "--seconds", f"expected a number of seconds in (0, {MAX_BENCH_SECONDS:g}], got {seconds}")
    sizes = [b for b in batch.split(",") if b.strip()] or [batch]
    if len(sizes) > MAX_BENCH_BATCHES:
        raise SpecError.at(None, "--batch", f"{len(sizes)} batch sizes; at most {MAX_BENCH_BATCHES}")
    batches = [_batch_size(b, "--batch") for b in sizes]
    rows, notes = run_bench(source, batches, threads, seconds)
    typer.echo(table(rows))
    for note in notes:
        typer.echo(note)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion)."""
    from netspec.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2, ensure_ascii=False))


def _batch_size(text: str, flag: str, alternative: str = "") -> int:
    """A batch size written by the user: ASCII digits only (`²`.isdigit() is true too), 1..MAX_BATCH_SIZE."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 9 and 1 <= int(digits) <= MAX_BATCH_SIZE:
        return int(digits)
    from exporters.runtime import printable

    raise SpecError.at(None, flag, f"expected {alternative}a batch size from 1 to {MAX_BATCH_SIZE}, "
                       f"got `{printable(text[:40])}`")


def _check_weights(weights: str) -> None:
    if weights not in WEIGHTS:  # the name becomes a file name in the run directory
        from exporters.runtime import printable

        raise SpecError.at(None, "--weights", f"expected best or last, got `{printable(weights[:40])}`")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line each and exit 2; internal errors exit 1."""
    from netspec.errors import RunStopped, SpecError, printable

    try:
        app(args=argv, prog_name="netspec")  # standalone: usage errors exit 2, success raises SystemExit(0)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except SpecError as error:
        if _state["debug"]:
            raise
        print(error.format(), file=sys.stderr)
        return 2
    except RunStopped as stopped:
        print(printable(str(stopped), keep_newlines=True), file=sys.stderr)
        return stopped.exit_code
    except BrokenPipeError:  # `netspec check big.yaml | head`: the reader left, as with any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — the one place internal errors are reported
        if _state["debug"]:
            raise
        print(f"internal error: {type(error).__name__}: {printable(str(error))} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
