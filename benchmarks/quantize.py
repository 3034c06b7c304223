"""Benchmark: int8 against float32 onnxruntime, float32 onnxruntime against PyTorch eager, and int8 accuracy.

    .venv/bin/python benchmarks/quantize.py [--threads 2] [--seconds 3] [--batches 1,32]
        [--specs torchvision/resnet18,cnn_bn,...] [--epochs 6] [--variants] [--no-accuracy]

Targets (issue 12): int8 ≥ 3× float32 onnxruntime on resnet18 at batch 1, with ≤ 0.5 point top-1
drop; float32 onnxruntime ≥ 1.4× PyTorch eager.

* speed: each spec (specs/torchvision/resnet18.yaml and the 3×32×32 specs under specs/) is built
  with seeded random weights, exported by netspec (export_onnx: float32, verified) and quantized
  the way `netspec export --quantize int8` does (netspec.exporters.quantize.quantize_int8: QDQ,
  per-channel int8 weights, uint8 activations, after quant_pre_process), calibrated here on 32
  random inputs (random weights have no training images; the scales do not change the kernels
  that run). PyTorch eager, float32 onnxruntime and int8 onnxruntime run in this one process,
  --threads threads each, in alternating blocks (the timer of `netspec bench`,
  exporters/bench.py `_time`) until each has had --seconds per batch size; the median and the
  minimum latency per call are reported, and the ratios of each (on a loaded machine the minimum
  is the closer to a quiet one). The ORT rows run with thread spinning off, as `netspec bench`
  runs them beside PyTorch; the "spinning" columns are the same files with onnxruntime's default
  spinning on, as `netspec infer` runs them (no PyTorch running in the process), in the same
  alternating blocks.
* accuracy: specs/cnn_bn.yaml (conv-BN-ReLU-pool ×2, linear) trained on digits for --epochs
  with `netspec train`, exported and quantized as above but calibrated on 256 training images
  (the export default), then top-1 on the whole validation split (360 images) for eager,
  float32 and int8, and the top-1 agreement of int8 with float32.
* --variants: resnet18 at batch 1 quantized other ways (activations int8 instead of uint8,
  QOperator instead of QDQ, reduce_range, no quant_pre_process, ORT's extended instead of full
  graph optimisation), timed against float32 in the same alternating blocks: why netspec's
  settings are the ones it uses.

The load average (`uptime`) is printed beside every case: the machine may be shared, and with 2
threads on 2 cores any other process slows both sides. Exit status is always 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine, print_table  # noqa: E402

from netspec.exporters.bench import _torch_call, time_in_blocks  # noqa: E402
from netspec.exporters.onnx import export_onnx  # noqa: E402
from netspec.exporters.quantize import cpu_has_vnni, quantize_int8  # noqa: E402
from netspec.exporters.runtime import OnnxModel  # noqa: E402
from netspec.run import load_source  # noqa: E402

CIFAR_SPECS = ("cnn_bn", "resnet_cifar", "se_resnet_cifar", "vgg11")
CALIBRATION_RANDOM = 32


def timed(calls: dict, seconds: float) -> dict[str, tuple[float, float]]:
    """name → (median ms, minimum ms): `netspec bench`'s timer (exporters/bench.py `time_in_blocks`),
    keeping the minimum too: on a loaded machine it is the closest to a quiet one."""
    samples = time_in_blocks(calls, seconds)
    return {name: (float(np.median(s)) * 1e3, min(s) * 1e3) for name, s in samples.items()}


def uptime() -> str:
    text = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return text.split("load average:")[-1].strip() if "load average" in text else text


def speed_case(spec: str, batches: list[int], threads: int, seconds: float, scratch: Path) -> list[tuple]:
    """(spec, batch, eager, fp32, int8, fp32 spinning, int8 spinning, load) for each batch size; each
    time a (median, minimum) pair in ms."""
    source = load_source(ROOT / "specs" / f"{spec}.yaml")
    fp32, int8 = scratch / f"{source.name}.onnx", scratch / f"{source.name}.int8.onnx"
    export_onnx(source, fp32)
    calibration = np.random.default_rng(1).standard_normal((CALIBRATION_RANDOM, *source.input_shape), dtype=np.float32)
    quantize_int8(fp32, int8, calibration)
    runtimes = {"fp32": OnnxModel(fp32, "cpu", threads, torch_in_process=True),
                "int8": OnnxModel(int8, "cpu", threads, torch_in_process=True),
                "fp32 spin": OnnxModel(fp32, "cpu", threads), "int8 spin": OnnxModel(int8, "cpu", threads)}
    model = source.model.eval()
    out = []
    for batch in batches:
        before = uptime()
        x = np.random.default_rng(0).standard_normal((batch, *source.input_shape), dtype=np.float32)
        tensor = torch.from_numpy(x)
        calls = {"eager": lambda: _torch_call(model, tensor),
                 **{k: (lambda m=m: m.run(x)) for k, m in runtimes.items()}}
        rows = timed(calls, seconds)
        out.append((spec, batch, rows["eager"], rows["fp32"], rows["int8"], rows["fp32 spin"], rows["int8 spin"],
                    f"{before} → {uptime()}"))
        print(f"  {spec} batch {batch}: " + ", ".join(f"{k} {m:.3f} ms (min {n:.3f})" for k, (m, n) in rows.items())
              + f" (load {out[-1][-1]})", flush=True)
    return out


def accuracy_case(epochs: int, threads: int, scratch: Path) -> dict:
    """cnn_bn trained on digits: top-1 of eager, fp32 and int8 on the validation split."""
    from netspec.exporters.bench_rows import _Eager
    from netspec.exporters.calibration import calibration_images
    from netspec.exporters.quantize import agreement
    from netspec.train.loop import train

    run_dir = scratch / "cnn_bn_digits"
    train(ROOT / "specs" / "cnn_bn.yaml", {"data": "digits", "epochs": epochs}, out=run_dir)
    source = load_source(run_dir)
    fp32, int8 = scratch / "digits.onnx", scratch / "digits.int8.onnx"
    export_onnx(source, fp32)
    calibrated = calibration_images(source, 256)
    quantize_int8(fp32, int8, source.card.preprocessing.apply_(calibrated.images.astype(np.float32)))
    data = source.run.validation_data()
    x = source.card.preprocessing.apply_(data.val.images.numpy().astype(np.float32))
    labels = data.val.labels.numpy()
    scores = {"eager": _Eager(source.model).run(x), "fp32": OnnxModel(fp32, "cpu", threads).run(x),
              "int8": OnnxModel(int8, "cpu", threads).run(x)}
    top1 = {k: 100.0 * float((s.argmax(1) == labels).mean()) for k, s in scores.items()}
    return {"images": len(labels), **top1, "agreement": agreement(scores["int8"], scores["fp32"])}


def variants_case(threads: int, seconds: float, scratch: Path) -> list[tuple]:
    """resnet18 batch 1: (variant, its (median, min) ms, fp32's in the same blocks, load)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = load_source(ROOT / "specs" / "torchvision" / "resnet18.yaml")
    fp32, prepared = scratch / "r18.onnx", scratch / "r18.pre.onnx"
    export_onnx(source, fp32)
    quant_pre_process(str(fp32), str(prepared))
    shape = source.input_shape
    calibration = np.random.default_rng(1).standard_normal((CALIBRATION_RANDOM, *shape), dtype=np.float32)
    name = OnnxModel(fp32, "cpu", 1).input_name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calibration[i:i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self):
            return next(self.batches, None)

    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    variants = {  # name: (input file, quantize_static options)
        "QDQ, uint8 activations (netspec)": (prepared, dict(quant_format=QuantFormat.QDQ, activation_type=u8)),
        "QDQ, int8 activations (S8S8)": (prepared, dict(quant_format=QuantFormat.QDQ, activation_type=s8)),
        "QOperator, uint8 activations": (prepared, dict(quant_format=QuantFormat.QOperator, activation_type=u8)),
        "QDQ, uint8, reduce_range": (prepared, dict(quant_format=QuantFormat.QDQ, activation_type=u8,
                                                     reduce_range=True)),
        "QDQ, uint8, no quant_pre_process": (fp32, dict(quant_format=QuantFormat.QDQ, activation_type=u8)),
    }
    models = {}
    for i, (label, (src, options)) in enumerate(variants.items()):
        path = scratch / f"r18.v{i}.onnx"
        quantize_static(str(src), str(path), Reader(), per_channel=True, weight_type=s8, **options)
        models[label] = OnnxModel(path, "cpu", threads, torch_in_process=True)
    extended = OnnxModel(scratch / "r18.v0.onnx", "cpu", threads, torch_in_process=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    extended.session = ort.InferenceSession(str(scratch / "r18.v0.onnx"), options, providers=["CPUExecutionProvider"])
    models["QDQ, uint8, ORT_ENABLE_EXTENDED"] = extended
    base = OnnxModel(fp32, "cpu", threads, torch_in_process=True)
    x = np.random.default_rng(0).standard_normal((1, *shape), dtype=np.float32)
    out = []
    for label, model in models.items():  # each variant against fp32 in its own alternating blocks
        rows = timed({"fp32": lambda: base.run(x), "v": lambda: model.run(x)}, seconds)
        out.append((label, rows["v"], rows["fp32"], uptime()))
        print(f"  {label}: {rows['v'][0]:.3f} ms vs fp32 {rows['fp32'][0]:.3f} ms (load {out[-1][-1]})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="per backend and batch size")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--specs", default=",".join(["torchvision/resnet18", *CIFAR_SPECS]))
    parser.add_argument("--epochs", type=int, default=6, help="digits training epochs for the accuracy case")
    parser.add_argument("--variants", action="store_true", help="also time other quantization settings")
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"machine: {machine()}; VNNI: {cpu_has_vnni()}; threads {args.threads}; load {uptime()}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="netspec-quant-bench-") as scratch:
        speed = [row for spec in args.specs.split(",")
                 for row in speed_case(spec, batches, args.threads, args.seconds, Path(scratch))]
        accuracy = None if args.no_accuracy else accuracy_case(args.epochs, args.threads, Path(scratch))
        variants = variants_case(args.threads, args.seconds, Path(scratch)) if args.variants else []
    report(speed, accuracy, variants)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load now {uptime()}")


def ms(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.3f} ({pair[1]:.3f})"


def ratio(slow: tuple[float, float], fast: tuple[float, float]) -> str:
    return f"{slow[0] / fast[0]:.2f}× ({slow[1] / fast[1]:.2f}×)"


def report(speed: list[tuple], accuracy: dict | None, variants: list) -> None:
    print("\nmedian (minimum) latency per call in ms; ratios of the medians (of the minima)\n")
    print_table(("spec", "batch", "eager", "ORT fp32", "ORT int8", "eager / fp32", "fp32 / int8",
                 "spinning: fp32", "int8", "fp32 / int8", "load (1, 5, 15 min) before → after"),
                [(s, str(b), ms(e), ms(f), ms(i), ratio(e, f), ratio(f, i), ms(fs), ms(is_), ratio(fs, is_), load)
                 for s, b, e, f, i, fs, is_, load in speed])
    if accuracy:
        print(f"\naccuracy, cnn_bn trained on digits, {accuracy['images']} validation images: "
              f"eager {accuracy['eager']:.2f} %, ORT fp32 {accuracy['fp32']:.2f} %, ORT int8 {accuracy['int8']:.2f} % "
              f"(drop {accuracy['fp32'] - accuracy['int8']:+.2f} points); int8 agrees with fp32 on "
              f"{accuracy['agreement']:.2f} %")
    if variants:
        print()
        print_table(("resnet18, batch 1", "int8", "fp32", "fp32 / int8", "load after"),
                    [(label, ms(v), ms(f), ratio(f, v), load) for label, v, f, load in variants])
    r18 = [row for row in speed if row[0].endswith("resnet18") and row[1] == 1]
    if r18:
        _, _, eager, fp32, int8, fp32_spin, int8_spin, _ = r18[0]
        for name, value, goal in (("int8 ≥ 3× fp32", fp32[0] / int8[0], 3),
                                  ("int8 ≥ 3× fp32, spinning", fp32_spin[0] / int8_spin[0], 3),
                                  ("fp32 ORT ≥ 1.4× eager", eager[0] / fp32[0], 1.4)):
            print(f"target {name} (resnet18, batch 1, medians): {value:.2f}× — {'met' if value >= goal else 'missed'}")
    if accuracy:
        drop = accuracy["fp32"] - accuracy["int8"]
        print(f"target ≤ 0.5 point drop (digits): {drop:+.2f} — {'met' if drop <= 0.5 else 'missed'}")


if __name__ == "__main__":
    main()
