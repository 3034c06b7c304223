"""What `netspec bench` times (exporters/bench.py times it): the backends, and the accuracy columns.

A spec or a run directory is exported to float32 ONNX in a scratch folder; `--quantize int8`
adds its int8 form, made and calibrated as `netspec export --quantize int8` makes it
(netspec.exporters.quantize and .calibration), and `--quantize fp16` its float16 form on a GPU. A model file of any
registered format is loaded through the exporter registry and benched as it is; a quantized file's
row is labelled by its model card's quantization and shows the accuracy recorded there.

Accuracy: for a run, top-1 on its validation split (at most ACCURACY_IMAGES, the same images for
every row) and each row's top-1 agreement with onnxruntime's float32 row; for a spec, which has
no labelled data, the agreement on ACCURACY_RANDOM random inputs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netspec.errors import ModelFileError, NetspecError, OptionError, SpecError
from netspec.exporters.runtime import MAX_BATCH_BYTES, OnnxModel, check_batch_memory, gpu_present, printable

ACCURACY_IMAGES = 2_000  # validation images each row is scored on, sampled (a forward pass per row)
ACCURACY_RANDOM = 256  # random inputs a spec's rows are compared on
ENGINES = {"onnx": "onnxruntime", "pt2": "torch.export"}  # the runtime a registered format runs on
FP32 = "fp32"


@dataclass
class Backends:
    """The runtimes to time, by row label (the float32 CPU one first), and what scores them."""

    runtimes: dict = field(default_factory=dict)
    shape: list = field(default_factory=list)
    where: str = "the spec"
    model: object = None  # PyTorch eager (None for a model file)
    source: object = None  # netspec.run.Source of a spec or run (None for a model file)
    baseline: str | None = None  # the float32 onnxruntime CPU row the others are compared with
    scored: bool = False  # accuracy columns shown (--quantize, or a quantized file)
    recorded: dict = field(default_factory=dict)  # label → (top-1 %, agreement %) from a file's card
    card: object = None  # a model file's card (its input shape and size rules)


def check_kinds(text: str | None) -> list[str]:
    """`--quantize int8`, `fp16` or `int8,fp16`: the forms benched beside float32."""
    if text is None:
        return []
    from netspec.exporters.quantize import check_quantize

    kinds = [k.strip() for k in text.split(",") if k.strip()] or [text]
    for kind in kinds:
        check_quantize(kind)
    return list(dict.fromkeys(kinds))


def engine_label(format_name: str, runtime, kind: str | None = None) -> str:
    # onnxruntime's "CUDAExecutionProvider" → cuda; a .pt2 program's "torch cuda" → cuda
    words = str(getattr(runtime, "provider", "")).removesuffix("ExecutionProvider").lower().split()
    provider = words[-1] if words else "cpu"
    return " ".join([ENGINES.get(format_name, format_name), provider, *([kind] if kind else [])])


def model_file_backends(path: Path, name: str, threads: int, kinds: list[str], notes: list[str]) -> Backends:
    """A model file of a registered format, on the CPU and (when present) the GPU, as it is."""
    from netspec.exporters import format_named

    if kinds:
        raise OptionError.at(None, "--quantize", f"{printable(path)} is a model file, benched as it is",
                             "give the spec or run directory to bench it quantized, or bench the quantized file")
    module = format_named(name)
    notes.append(f"PyTorch eager: n/a for a bare {module.SUFFIX} file (give the spec or run directory)")
    cpu = module.load(path, "cpu", threads)
    notes += [f"note: {printable(n)}" for n in getattr(cpu, "notes", [])]
    kind, recorded = card_quantization(cpu.card, cpu.where)
    backends = Backends(shape=list(cpu.card.input_shape), where=cpu.where, scored=kind is not None, card=cpu.card)
    runtimes = [cpu]
    if gpu_present():
        gpu = module.load(path, "auto", threads)
        if gpu.on_gpu:
            runtimes.append(gpu)
    for runtime in runtimes:
        label = engine_label(name, runtime, kind)
        backends.runtimes[label] = runtime
        if kind is not None:
            backends.recorded[label] = recorded
    if kind is not None:
        notes.append(f"top-1 and agreement: as recorded in the file's model card when the file was {kind}-quantized"
                     " (— where it records none)")
    return backends


def card_quantization(card, where: str) -> tuple[str | None, tuple]:
    """The quantization type of a file's card and the (top-1 %, agreement %) it records; the card
    is untrusted: each field is checked before it is shown."""
    info = card.quantization
    if info is None:
        return None, (None, None)
    kind = info.get("type")
    if kind not in ("int8", "fp16"):
        raise ModelFileError.at(None, where, f"metadata `netspec.quantization`: unknown type "
                                f"{printable(str(kind))[:40]!r}", "a netspec file is int8 or fp16")
    accuracy = info.get("accuracy") if isinstance(info.get("accuracy"), dict) else {}
    return kind, (_percent(accuracy.get(kind)), _percent(accuracy.get("agreement")))


def _percent(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 100
    return float(value) if ok else None


def source_backends(path: Path, scratch: Path, threads: int, kinds: list[str], batches: list[int],
                    notes: list[str], input: str | None = None) -> Backends:
    """A spec or a run: exported to float32 ONNX in `scratch` (and to the `kinds` asked for)."""
    from netspec.exporters.onnx import export_onnx
    from netspec.run import load_source

    source = load_source(path, input=input)
    check_batches(batches, source.input_shape, "the spec")
    fp32 = scratch / f"{source.name}.onnx"
    report = export_onnx(source, fp32)
    notes += [*report.notes, f"parity: {report.parity_text()}"]
    backends = Backends(shape=list(source.input_shape), model=source.model.eval(), source=source, scored=bool(kinds))
    suffix = FP32 if kinds else None
    cpu = OnnxModel(fp32, "cpu", threads)  # spinning as deployed (see netspec/exporters/bench.py)
    backends.baseline = engine_label("onnx", cpu, suffix)
    backends.runtimes[backends.baseline] = cpu
    gpu = _gpu_runtime(fp32, threads)
    if gpu is not None:
        backends.runtimes[engine_label("onnx", gpu, suffix)] = gpu
    for kind in kinds:
        if kind == "int8":
            int8 = scratch / f"{source.name}.int8.onnx"
            _quantize_int8(source, fp32, int8, notes)
            backends.runtimes[engine_label("onnx", cpu, "int8")] = OnnxModel(int8, "cpu", threads)
        elif gpu is None:
            notes.append("fp16: skipped, no GPU here (onnxruntime's CPU provider has few float16 kernels "
                         "on x86 and casts around the rest, so an fp16 row would time the casts, not fp16)")
        else:
            from netspec.exporters.quantize import quantize_fp16

            quantize_fp16(fp32, scratch / f"{source.name}.fp16.onnx")
            fp16 = _gpu_runtime(scratch / f"{source.name}.fp16.onnx", threads)
            if fp16 is None:
                notes.append("fp16: skipped, the float16 file did not start on the GPU provider")
            else:
                backends.runtimes[engine_label("onnx", fp16, "fp16")] = fp16
    return backends


def _gpu_runtime(path: Path, threads: int):
    if not gpu_present():
        return None
    runtime = OnnxModel(path, "auto", threads)
    return runtime if runtime.on_gpu else None


def _quantize_int8(source, fp32: Path, int8: Path, notes: list[str]) -> None:
    """int8 as `netspec export --quantize int8` makes it, calibrated on the same images
    (netspec.exporters.calibration: the run's training images; for a spec its `train:` data, or
    synthetic images with a warning)."""
    from netspec.exporters import DEFAULT_CALIBRATION
    from netspec.exporters.calibration import calibration_images
    from netspec.exporters.quantize import ACTIVATIONS, cpu_has_vnni, quantize_int8

    check_batch_memory("--quantize", DEFAULT_CALIBRATION, list(source.input_shape))
    calibrated = calibration_images(source, DEFAULT_CALIBRATION)
    notes += calibrated.warnings
    quantize_int8(fp32, int8, source.card.preprocessing.apply_(calibrated.images.astype(np.float32)))
    notes.append(f"int8: QDQ, per-channel int8 weights, {ACTIVATIONS} activations, calibrated on "
                 f"{len(calibrated.images)} images ({calibrated.data}), as `netspec export --quantize int8` does")
    if not cpu_has_vnni():
        notes.append("int8: this CPU has no VNNI or AMX int8 instructions; int8 may be slower than fp32 here")


def _random(count: int, shape: list) -> np.ndarray:
    fitting = max(1, MAX_BATCH_BYTES // (4 * math.prod(shape)))
    return np.random.default_rng(1).standard_normal((min(count, fitting), *shape), dtype=np.float32)


def check_batches(batches: list[int], shape: list, where: str) -> None:
    """Random inputs of every batch size are allocated: a fixed shape, within the memory budget."""
    if not all(isinstance(d, int) for d in shape):
        kind = SpecError if where == "the spec" else ModelFileError
        raise kind.at(None, where, "bench needs a fixed input size; this input has open axes "
                           f"({'×'.join('?' if d is None else str(d) for d in shape)})",
                      "give one with --input, e.g. --input 3x224x224")
    for batch in batches:
        check_batch_memory("--batch", batch, shape)


def fill_open_axes(card, text: str | None, where: str) -> list:
    """A model file's input shape with its open axes (None) set from `--input CxHxW`: its fixed
    axes must be the ones given, its open ones what the card's size rules allow (exporters/dynamic.py)."""
    from netspec.exporters.dynamic import from_card

    shape, rules = list(card.input_shape), from_card(card.input_shape, card.input_constraints)
    if text is None:
        if rules is not None and None in shape:
            example = "x".join(map(str, rules.smallest))
            raise ModelFileError.at(None, where, f"bench needs a fixed input size; this file takes "
                                    f"{rules.shape_text()} ({rules.text()})", f"give one with --input, e.g. {example}")
        return shape
    parts = text.lower().split("x")
    sizes = [int(p) for p in parts if p.isascii() and p.isdigit() and len(p) <= 6 and int(p) > 0]
    if len(sizes) != len(parts) or len(sizes) != len(shape):
        raise OptionError.at(None, "--input", f"expected {len(shape)} sizes such as "
                             f"{'x'.join(str(d or 64) for d in shape)}, got `{printable(text[:40])}`")
    if any(have is not None and have != want for have, want in zip(shape, sizes)):
        raise OptionError.at(None, "--input", f"{where} takes {'×'.join(str(d or '?') for d in shape)}; "
                             f"`{printable(text[:40])}` does not fit it")
    for rule in rules.rules if rules is not None else ():
        wanted = {sizes[d] for d in rule.dims}
        if len(wanted) > 1 or not rule.allows(min(wanted)):
            axes = " = ".join("CHW"[d] for d in rule.dims)
            problem = f"{axes} (one symbol, {rule.symbol})" if len(wanted) > 1 else rule.broken(min(wanted))
            raise OptionError.at(None, "--input", f"{where} needs {problem}",
                                 f"its sizes: {rules.text()}")
    return sizes


class _Eager:
    """PyTorch eager with a runtime's `.run(x) -> scores`."""

    def __init__(self, model):
        self.model = model

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()


def score(backends: Backends, rows: list, notes: list[str]) -> None:
    """Each row's top-1 % and agreement % with the float32 onnxruntime row (same inputs for every row)."""
    if not backends.scored:
        return
    for row in rows:
        row.scored = True
    if backends.recorded:
        for row in rows:
            row.accuracy, row.agreement = backends.recorded.get(row.backend, (None, None))
        return
    runtimes = dict(backends.runtimes)
    if backends.model is not None:
        runtimes["pytorch eager"] = _Eager(backends.model)
    scores, labels, what = _scored(backends, runtimes, notes)
    base = scores[backends.baseline]
    if base.ndim != 2 or base.shape[1] < 2:
        shown = "×".join(map(str, base.shape[1:]))
        notes.append(f"top-1 and agreement: n/a for an output of {shown} (not class scores)")
        return
    from netspec.exporters.quantize import agreement

    found = {label: (_accuracy(s, labels), agreement(s, base)) for label, s in scores.items()}
    for row in rows:
        row.accuracy, row.agreement = found.get(row.backend, (None, None))
    notes.append(f"top-1: {what}; agreement: the top-1 class the same as {backends.baseline}'s on those inputs")


def _scored(backends: Backends, runtimes: dict, notes: list[str]) -> tuple[dict, np.ndarray | None, str]:
    """Every runtime's scores on a run's validation images (ACCURACY_IMAGES of them, sampled, in
    chunks) and their labels; for a spec (or an unreadable split), on random inputs, no labels."""
    source = backends.source
    if source is not None and source.run is not None:
        from netspec.exporters.calibration import held_out_images

        try:
            held = held_out_images(source, None, ACCURACY_IMAGES)
            scores, labels = {label: [] for label in runtimes}, []
            for images, chunk_labels in held.chunks():
                x = source.card.preprocessing.apply_(images.astype(np.float32))
                for label, runtime in runtimes.items():
                    scores[label].append(runtime.run(x))
                labels.append(chunk_labels)
            if labels:
                what = f"on {len(held):,} images of the run's {printable(held.data)} (the same for every row)"
                return {k: np.concatenate(v) for k, v in scores.items()}, np.concatenate(labels), what
        except NetspecError as e:
            notes.append(f"top-1: the validation split cannot be read ({e.diagnostics[0].message})")
    x = _random(ACCURACY_RANDOM, backends.shape)
    scores = {label: np.concatenate([r.run(x[i:i + 256]) for i in range(0, len(x), 256)])
              for label, r in runtimes.items()}
    return scores, None, f"— (no labelled data for a spec; compared on {len(x)} random inputs)"


def _accuracy(scores: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return 100.0 * float((scores.argmax(axis=1) == labels).mean())
