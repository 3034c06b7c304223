"""`netspec export … --onnx --quantize int8|fp16`: the verified float32 file, quantized and verified in turn.

int8: onnxruntime's `quant_pre_process` (symbolic and ONNX shape inference, then its graph
optimisation: BatchNorm folded into the convolutions) and `quantize_static` in QDQ format with
per-channel int8 weights, calibrated (MinMax) on training images preprocessed as in training.
fp16: onnxruntime.transformers' `convert_float_to_float16` with float32 inputs and outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netspec.errors import ExportError, NetspecError, OptionError

KINDS = ("int8", "fp16")
CALIBRATION_BATCH = 32  # images per calibration forward pass of a dynamic-batch graph
# The MinMax calibrator records each batch's per-tensor ReduceMin/ReduceMax only (not the activations),
# so its memory is small. (Its CalibMaxIntermediateOutputs option is not used: in onnxruntime 1.31.1
# collect_data discards the recorded batches when that count is reached instead of merging them.)


def check_quantize(kind: str) -> None:
    if kind not in KINDS:
        raise OptionError.at(None, "--quantize", f"unknown quantization {ascii(kind)[1:-1][:40]!r}",
                             f"choose one of: {', '.join(KINDS)}")


class _Batches:
    """onnxruntime's CalibrationDataReader over a float32 N×C×H×W array, `size` images at a time (a
    fixed-batch graph gets exactly its batch: the last chunk is filled by repeating images, which
    leaves min/max calibration unchanged)."""

    def __init__(self, input_name: str, calibration: np.ndarray, size: int | None):
        self.input_name, self.data, self.size, self.start = input_name, calibration, size, 0

    def get_next(self):
        if self.start >= len(self.data):
            return None
        batch = self.data[self.start:self.start + (self.size or CALIBRATION_BATCH)]
        self.start += len(batch)
        if self.size and len(batch) < self.size:
            batch = np.concatenate([batch, batch[np.arange(self.size - len(batch)) % len(batch)]])
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self):
        self.start = 0


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """`src` (float32 ONNX) → `dst`: quant_pre_process (shape inference, BN folding / optimisation),
    then quantize_static in QDQ format with per-channel int8 weights and ACTIVATIONS activations,
    calibrated on `calibration` (float32 N×C×H×W, preprocessed as in training) in batches. The
    dynamic batch axis is kept."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    reader_type = type("NetspecCalibration", (_Batches, CalibrationDataReader), {})
    graph_input = onnx.load(str(src), load_external_data=False).graph.input[0]
    first = graph_input.type.tensor_type.shape.dim[0]
    reader = reader_type(graph_input.name, calibration, first.dim_value if first.HasField("dim_value") else None)
    with tempfile.TemporaryDirectory(prefix=".netspec-quant-", dir=dst.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
        quantize_static(str(prepared), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=_quant_type(ACTIVATIONS), weight_type=_quant_type("int8"),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


# uint8 (asymmetric) activations with int8 weights: the U8S8 kernels VNNI's vpdpbusd runs. Measured
# on this 2-core AVX-512 VNNI CPU, resnet18 batch 1, 2 threads, five rounds: fp32 8.07–8.39 ms, uint8
# activations 2.66–2.79 ms, int8 activations 7.69–8.15 ms (hardly faster than fp32). docs/deployment.md.
ACTIVATIONS = "uint8"


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def quantize_fp16(src: Path, dst: Path) -> None:
    """`src` (float32 ONNX) → `dst` with float16 weights and computation; inputs and outputs stay float32
    (onnxruntime.transformers.float16.convert_float_to_float16, keep_io_types=True)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel as Graph

    graph = Graph(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True))
    graph.topological_sort()  # the converter appends the output's Cast after its consumer; onnx.checker refuses
    onnx.save(graph.model, str(dst))


def accuracy(runtime, images: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy in percent of `runtime` (.run(x) -> N×K scores) on float32 `images` against `labels`."""
    if len(images) == 0:
        raise ValueError("accuracy of no images")
    right = 0
    for start in range(0, len(images), batch):
        scores = runtime.run(images[start:start + batch])
        right += int((scores.argmax(axis=1) == np.asarray(labels[start:start + batch])).sum())
    return 100.0 * right / len(images)


def agreement(a_scores: np.ndarray, b_scores: np.ndarray) -> float:
    """Percent of samples whose top-1 class is the same in both N×K score arrays."""
    a, b = np.asarray(a_scores), np.asarray(b_scores)
    if a.shape != b.shape or a.ndim != 2 or len(a) == 0:
        raise ValueError(f"agreement needs two N×K score arrays of one shape, got {a.shape} and {b.shape}")
    return 100.0 * float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_vnni() -> bool:
    """Whether this CPU has an int8 dot-product instruction (x86 VNNI or AMX), from /proc/cpuinfo;
    False when that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            text = file.read(4_000_000)
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in VNNI_FLAGS)
    return False




def check_max_drop(max_drop: float) -> None:
    if not (isinstance(max_drop, (int, float)) and math.isfinite(max_drop) and 0 <= max_drop <= 100):
        raise OptionError.at(None, "--max-drop", f"expected accuracy points from 0 to 100, got {max_drop!r}"[:120],
                             "e.g. --max-drop 1 refuses an int8 file more than 1 point less accurate")


@dataclass
class QuantizeReport:
    kind: str
    record: dict  # what the model card's `quantization` says
    float_bytes: int = 0
    bytes: int = 0
    messages: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [*self.messages, f"{self.kind}: {self.float_bytes / 2**20:.2f} MiB as float32 → "
                f"{self.bytes / 2**20:.2f} MiB ({self.bytes / max(self.float_bytes, 1):.0%})"]


def quantize_file(path, source, kind: str, calibration: int, max_drop: float, batch) -> QuantizeReport:
    """Replace the verified float32 ONNX file at `path` by its `kind` form, verified in turn (int8: by
    accuracy on the validation split; fp16: parity with PyTorch at FP16_TOLERANCE). Raises (an
    ExportError; exit 1 when the quantized file does not verify) and leaves `path` alone otherwise."""
    check_quantize(kind)
    check_max_drop(max_drop)
    path = Path(path)
    if path.with_name(path.name + ".data").exists():
        raise ExportError.at(None, "--quantize", "a model over 2 GB (weights in external data) is not quantized here")
    staged = path.with_name(f".{kind}-{path.name}")
    try:
        if kind == "int8":
            report = _int8(path, staged, source, calibration, max_drop)
        else:
            report = _fp16(path, staged, source, batch)
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)
    report.bytes = path.stat().st_size
    return report


def _int8(path: Path, staged: Path, source, count: int, max_drop: float) -> QuantizeReport:
    from netspec.exporters.calibration import calibration_images, concrete_shape
    from netspec.exporters.runtime import check_batch_memory

    check_batch_memory("--calibration", count, list(concrete_shape(source)))
    _check_classifier(source)
    calibrated = calibration_images(source, count)
    x = source.card.preprocessing.apply_(calibrated.images.astype(np.float32))
    quantize_int8(path, staged, x)
    record = {"type": "int8", "format": "QDQ", "per_channel": True, "weights": "int8", "activations": ACTIVATIONS,
              "calibration": {"images": len(x), "data": calibrated.data, "method": "MinMax"}}
    report = QuantizeReport("int8", record, path.stat().st_size, messages=list(calibrated.warnings))
    if not cpu_has_vnni():
        report.messages.append("note: this CPU has no VNNI or AMX int8 instructions (/proc/cpuinfo): int8 may run "
                               "slower than float32 here")
    report.messages.append(f"int8, from the float32 graph verified above: QDQ, per-channel int8 weights, {ACTIVATIONS} "
                           f"activations, calibrated (MinMax) on {len(x)} images ({calibrated.data}); "
                           "onnx.checker (full_check): ok")
    _write_quantized(staged, path, source, record)
    record["accuracy"] = _judge_int8(path, staged, source, calibrated, max_drop, report)
    _write_quantized(staged, path, source, record)
    return report


def _check_classifier(source) -> None:
    import torch

    with torch.no_grad():
        shape = list(source.model(torch.zeros(1, *source.input_shape)).shape[1:])
    if len(shape) != 1 or shape[0] < 2:
        raise ExportError.at(None, "--quantize", f"int8 is judged by top-1 accuracy of class scores; this model "
                             f"gives {'×'.join(map(str, shape))} per sample", "quantize classifiers only")


def _judge_int8(path: Path, staged: Path, source, calibrated, max_drop: float, report: QuantizeReport) -> dict:
    """float32 vs int8 on held-out images: accuracy (when labelled) and top-1 agreement; refuses
    (exit 1) when int8 loses more than `max_drop` points."""
    from netspec.exporters.calibration import held_out_images
    from netspec.exporters.runtime import OnnxModel

    try:
        held = held_out_images(source, calibrated)
    except NetspecError as e:
        report.messages.append(f"note: int8 accuracy not measured: the validation split cannot be loaded "
                               f"({e.diagnostics[0].message[:200]})")
        held = None
    if held is None or len(held) == 0:
        return {}
    runtimes = [OnnxModel(p, "cpu", torch_in_process=True) for p in (path, staged)]
    scores, labels = [[], []], []
    for images, chunk_labels in held.chunks():
        x = source.card.preprocessing.apply_(images.astype(np.float32))
        for kept, runtime in zip(scores, runtimes):
            kept.append(runtime.run(x))
        labels.append(chunk_labels)
    fp32, int8 = (np.concatenate(s) for s in scores)
    agree = agreement(fp32, int8)
    same = int(round(agree * len(fp32) / 100))
    measured = {"agreement": round(agree, 4), "samples": len(fp32), "data": held.data}
    if not held.labelled:
        report.messages.append(f"int8 accuracy not measured (a spec has no labelled validation data for its "
                               f"classes); top-1 agreement with float32 on {len(fp32)} held-out images "
                               f"({held.data}): {agree:.2f}% ({same} of {len(fp32)})")
        return measured
    truth = np.concatenate(labels)
    acc = [100.0 * float((s.argmax(axis=1) == truth).mean()) for s in (fp32, int8)]
    measured.update(fp32=round(acc[0], 4), int8=round(acc[1], 4))
    drop = acc[0] - acc[1]
    text = (f"float32 {acc[0]:.2f}%, int8 {acc[1]:.2f}% on {len(fp32)} validation samples ({held.data}); "
            f"top-1 agreement {agree:.2f}% ({same} of {len(fp32)})")
    if drop > max_drop:
        raise verification_failed(f"int8 accuracy drops {drop:.2f} points, more than --max-drop {max_drop:g}: "
                                  f"{text} — the file was not kept")
    report.messages.append(f"int8 accuracy: {text}; int8 − float32 = {-drop:+.2f} points (--max-drop {max_drop:g})")
    return measured


def verification_failed(message: str) -> ExportError:
    """A quantized file that did not verify: exit 1, as netspec.exporters.onnx's (which imports this module)."""
    error = ExportError.at(None, "", message)
    error.exit_code = 1
    return error


def _checked(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx.checker.ValidationError, shape inference errors
        raise verification_failed(f"the quantized model fails onnx.checker: {str(e).splitlines()[0]}") from None


def _write_quantized(staged: Path, float_path: Path, source, record: dict) -> None:
    """The float file's netspec metadata and doc string on the quantized file, with card.quantization
    recorded (netspec.modelcard serialises it); then onnx.checker, and the card read back as `infer` reads it."""
    import copy
    import dataclasses

    import onnx

    from netspec.exporters.runtime import OnnxModel

    original = onnx.load(str(float_path), load_external_data=False)
    model = onnx.load(str(staged))
    props = {p.key: p.value for p in original.metadata_props}
    props.update(dataclasses.replace(source.card, quantization=copy.deepcopy(record)).export_metadata())
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = original.doc_string
    used = {node.domain or "" for node in model.graph.node} | {""}  # quant_pre_process declares every ORT domain
    kept = [o for o in model.opset_import if (o.domain if o.domain != "ai.onnx" else "") in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    opsets = [next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None) for m in (original, model)]
    if opsets[0] != opsets[1]:  # onnxruntime's quantizer raises an opset it cannot quantize at
        raise ExportError.at(None, "--opset", f"--quantize {record['type']} wrote opset {opsets[1]}, not the "
                             f"{opsets[0]} asked for; the file was not kept", "choose --opset 13 or above")
    onnx.save(model, str(staged))
    _checked(staged)
    if OnnxModel(staged, "cpu", torch_in_process=True).card.quantization != record:
        raise ExportError.at(None, "--quantize", "the quantized file's model card does not read back as written")


def _fp16(path: Path, staged: Path, source, batch) -> QuantizeReport:
    """float16 weights and computation, float32 inputs and outputs; parity with PyTorch at
    FP16_TOLERANCE × the output's scale, on every runtime here that can run it (the CPU provider,
    and CUDA when a GPU is present)."""
    from netspec.exporters.calibration import concrete_shape
    from netspec.exporters.fp16_check import FP16_TOLERANCE, float16_ops, fp16_inputs, fp16_parity
    from netspec.exporters.runtime import OnnxModel, gpu_present

    concrete_shape(source, images=False)
    quantize_fp16(path, staged)
    record = {"type": "fp16", "io": "float32"}
    report = QuantizeReport("fp16", record, path.stat().st_size)
    _write_quantized(staged, path, source, record)
    report.messages.append("fp16, from the float32 graph verified above: float16 weights and operators, float32 "
                           "inputs and outputs; onnx.checker (full_check): ok")
    inputs, described = fp16_inputs(source, batch)
    parity = []
    for provider in ("cpu", "cuda") if gpu_present() else ("cpu",):
        try:
            runtime = OnnxModel(staged, provider, torch_in_process=True)
            measured = fp16_parity(runtime, source, inputs)
        except NetspecError as e:
            report.messages.append(f"note: fp16 parity not measured on {provider}: {e.diagnostics[0].message[:200]}")
            continue
        measured.update(runtime=runtime.provider, samples=described)
        counted = float16_ops(staged, inputs[0]) if provider == "cpu" else None  # one batch: 1, or the fixed one
        if counted is not None:
            measured["float16_ops"] = counted
        parity.append(measured)
        line = (f"fp16 parity on {runtime.provider}, {described}: max |diff| = {measured['max_abs_diff']:.2e} "
                f"(tolerance {measured['tolerance']:.2e} = {FP16_TOLERANCE:g} × largest |output| "
                f"{measured['output_scale']:.3g})" + (f", top-1 agreement {measured['agreement']:.2f}%"
                                                      if measured["agreement"] is not None else ""))
        if measured["max_abs_diff"] > measured["tolerance"]:
            raise verification_failed(line + " — the file was not kept")
        report.messages.append(line)
        if counted is not None:
            done, total = counted
            report.messages.append(f"note: onnxruntime's CPU provider ran {done} of {total} operators on float16 "
                                   "inputs and casts the others' inputs to float32 (it has no fp16 kernel for them), "
                                   "so on the CPU this parity measures the float16 rounding of the weights"
                                   + (", and float16 arithmetic in those" if done else ", not float16 arithmetic"))
    if not parity:
        report.messages.append("fp16: checked by onnx.checker only; no runtime here could run it, parity not measured")
    record["parity"] = parity
    _write_quantized(staged, path, source, record)
    return report
