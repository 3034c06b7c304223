"""`netspec bench SPEC|RUN_DIR|MODEL.onnx`: PyTorch eager vs onnxruntime, same process, same threads.

Latency is measured per call with a warm-up, backends interleaved round by round so drift hits
both alike; throughput is batch / median latency. Thread counts are explicit and equal on both
sides, and ORT's spinning is off because torch shares the process.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.errors import ModelFileError, SpecError
from netspec.exporters.runtime import OnnxModel, check_batch_memory, gpu_present


@dataclass
class Row:
    backend: str
    batch: int
    median_ms: float
    p90_ms: float
    per_second: float
    speedup: float | None = None  # vs PyTorch eager at the same batch


def bench(path: Path, batches: list[int], threads: int | None = None,
          seconds: float = 2.0) -> tuple[list[Row], list[str]]:
    """Rows of the table and notes (provider fallbacks, parity)."""
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    path = Path(path)
    notes = [f"threads: {threads} (torch intra-op and onnxruntime intra-op alike)"]
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as scratch:
        if path.suffix == ".onnx":
            onnx_path, model = path, None
            notes.append("PyTorch eager: n/a for a bare .onnx file (give the spec or run directory)")
        else:
            from netspec.exporters.onnx import export_onnx
            from netspec.run import load_source

            source = load_source(path)
            _check_batches(batches, source.input_shape, "the spec")
            model = source.model.eval()
            onnx_path = Path(scratch) / f"{source.name}.onnx"
            report = export_onnx(source, onnx_path)
            notes += [*report.notes, f"parity: {report.parity_text()}"]
        backends = {"onnxruntime cpu": OnnxModel(onnx_path, "cpu", threads, torch_in_process=True)}
        if gpu_present():
            gpu = OnnxModel(onnx_path, "auto", threads, torch_in_process=True)
            if gpu.on_gpu:
                backends[f"onnxruntime {gpu.provider.removesuffix('ExecutionProvider').lower()}"] = gpu
        shape = backends["onnxruntime cpu"].card.input_shape
        _check_batches(batches, shape, backends["onnxruntime cpu"].where)
        rows = []
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
            calls = {name: (lambda m=m: m.run(x)) for name, m in backends.items()}
            if model is not None:
                tensor = torch.from_numpy(x)
                calls = {"pytorch eager": lambda: _torch_call(model, tensor), **calls}
            rows += _time(calls, batch, seconds)
    return rows, notes


def _check_batches(batches: list[int], shape: list, where: str) -> None:
    """Random inputs of every batch size are allocated: a fixed shape, within the memory budget."""
    if not all(isinstance(d, int) for d in shape):
        kind = SpecError if where == "the spec" else ModelFileError
        raise kind.at(None, where, "bench needs a fixed input size; this input has open axes "
                           f"({'×'.join('?' if d is None else str(d) for d in shape)})")
    for batch in batches:
        check_batch_memory("--batch", batch, shape)


def _torch_call(model, x):
    import torch

    with torch.inference_mode():
        return model(x)


BLOCK_SECONDS = 0.2  # each backend runs for this long at a stretch, then the next one
SETTLE_SECONDS = 0.02  # a pause between blocks: the previous backend's worker threads stop spinning


def _time(calls: dict, batch: int, seconds: float) -> list[Row]:
    """Blocks of calls per backend, alternating until each has had `seconds`.

    Alternating blocks (not single calls) keeps drift fair without one runtime's spinning
    threads stealing the cores the other needs on the very next call."""
    for call in calls.values():  # warm-up: allocations, lazy init, ORT's first-run planning
        for _ in range(3):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    spent = {name: 0.0 for name in calls}
    while min(spent.values()) < seconds or min(len(s) for s in samples.values()) < 10:
        for name, call in calls.items():
            time.sleep(SETTLE_SECONDS)
            block_end = time.perf_counter() + BLOCK_SECONDS
            while True:
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed)
                spent[name] += elapsed
                if start + elapsed >= block_end:
                    break
    rows = []
    for name, times in samples.items():
        median = statistics.median(times)
        p90 = float(np.percentile(times, 90))
        rows.append(Row(name, batch, median * 1e3, p90 * 1e3, batch / median))
    eager = next((r for r in rows if r.backend == "pytorch eager"), None)
    for row in rows:
        row.speedup = eager.median_ms / row.median_ms if eager else None
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'backend':<22} {'batch':>5} {'median ms':>10} {'p90 ms':>9} {'images/s':>10} {'vs eager':>9}"]
    for r in rows:
        speed = f"{r.speedup:.2f}×" if r.speedup is not None else "—"
        lines.append(f"{r.backend:<22} {r.batch:>5} {r.median_ms:>10.3f} {r.p90_ms:>9.3f} "
                     f"{r.per_second:>10,.0f} {speed:>9}")
    return "\n".join(lines)
