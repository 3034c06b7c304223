"""Checking an fp16 ONNX file (`netspec export --quantize fp16`) against PyTorch.

Tolerance: float16 keeps 11 significant bits (unit roundoff 2^-11 ≈ 4.9e-4), so rounding the
weights and activations of a network moves each output by a few roundoffs of the output's own
scale per layer. FP16_TOLERANCE allows 1e-2 × the largest |output| PyTorch gives on the same
inputs (about 20 roundoffs): far above what a correct conversion shows (2e-4 relative for LeNet on
digits) and far below what a wrong operator gives (an error of the order of the output itself).
A bound on |diff| also bounds top-1 flips: a sample can change class only when its two best
scores are within 2 × the tolerance, so agreement is reported, not gated separately.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netspec.errors import NetspecError

FP16_TOLERANCE = 1e-2  # max |fp16 − torch| allowed, relative to the largest |output| of torch on the same inputs
FP16_REAL_SAMPLES = 256  # validation images compared, besides random inputs


def fp16_inputs(source, batch) -> tuple[list[np.ndarray], str]:
    """Random inputs (batches 1 and 3, or the fixed batch) and up to FP16_REAL_SAMPLES validation images."""
    import torch

    generator = torch.Generator().manual_seed(0)
    sizes = (1, 3) if batch in ("dynamic", None) else (int(batch),)
    inputs = [torch.randn(size, *source.input_shape, generator=generator).numpy() for size in sizes]
    described = f"{sum(sizes)} random inputs"
    try:
        real = source.validation_images(FP16_REAL_SAMPLES)
    except NetspecError:
        real = None
    if real is not None and len(real):
        inputs.append(source.card.preprocessing.apply_(real.astype(np.float32)))
        described += f" and {len(real)} validation samples"
    return inputs, described


def fp16_parity(runtime, source, inputs: list[np.ndarray]) -> dict:
    import torch

    diffs, scale, agree, total = [], 0.0, 0, 0
    for x in inputs:
        with torch.no_grad():
            expected = source.model(torch.from_numpy(x)).numpy()
        actual = runtime.run(x)
        if actual.shape != expected.shape or not np.isfinite(actual).all():
            diffs.append(float("inf"))
            continue
        diffs.append(float(np.abs(actual.astype(np.float64) - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
        if expected.ndim == 2 and expected.shape[1] >= 2:
            agree += int((actual.argmax(1) == expected.argmax(1)).sum())
            total += len(x)
    tolerance = FP16_TOLERANCE * max(scale, 1e-3)
    return {"max_abs_diff": max(diffs), "tolerance": tolerance, "output_scale": scale,
            "agreement": 100.0 * agree / total if total else None}


def float16_ops(path: Path, x: np.ndarray) -> list[int] | None:
    """[operators onnxruntime's CPU provider ran with a float16 input (Casts aside), all operators it ran],
    from one profiled run of the file netspec just wrote; None when the profile cannot be had."""
    try:
        return _profiled(path, x)
    except Exception:  # noqa: BLE001 — onnxruntime's own error types; the count is a note, not a check
        return None


def _profiled(path: Path, x: np.ndarray) -> list[int]:
    import json
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="netspec-profile-") as folder:
        options = ort.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, str(Path(folder) / "run")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, {session.get_inputs()[0].name: x})
        with open(session.end_profiling(), encoding="utf-8") as file:
            events = json.load(file)
    ops = [e["args"] for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    ops = [op for op in ops if op.get("op_name") != "Cast"]
    half = [op for op in ops if any("float16" in kind for shape in op.get("input_type_shape", []) for kind in shape)]
    return [len(half), len(ops)]
