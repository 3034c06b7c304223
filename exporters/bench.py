"""`netspec bench SPEC|RUN_DIR|MODEL_FILE [--quantize int8|fp16]`: PyTorch eager vs onnxruntime
(float32, and int8/fp16 beside it), same process, same threads. What is timed and how accuracy is
scored: exporters/bench_rows.py.

Latency is measured per call with a warm-up, backends interleaved round by round so drift hits
both alike; throughput is batch / median latency. Thread counts are explicit and equal on both
sides. onnxruntime's sessions run as `netspec infer` runs them, with their worker threads
spinning between operators (int8 graphs run many short operators and gain most from it); the
backends never run at the same time — each runs in blocks, with a pause before every block in
which spinning threads go back to sleep — so the spinning does not take cores from PyTorch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.exporters.bench_rows import (
    Backends,
    check_batches,
    check_kinds,
    fill_open_axes,
    model_file_backends,
    score,
    source_backends,
)


@dataclass
class Row:
    backend: str
    batch: int
    median_ms: float
    p90_ms: float
    per_second: float
    speedup: float | None = None  # vs PyTorch eager at the same batch
    accuracy: float | None = None  # top-1 %, with --quantize or for a quantized file
    agreement: float | None = None  # top-1 agreement % with the float32 onnxruntime row
    scored: bool = False  # accuracy columns shown (— where a value is not known)


def bench(path: Path, batches: list[int], threads: int | None = None, seconds: float = 2.0,
          quantize: str | None = None, input: str | None = None) -> tuple[list[Row], list[str]]:
    """Rows of the table and notes (provider fallbacks, parity, how accuracy was measured).

    `path`: a spec, a run directory or a model file of a registered format; `quantize`: int8,
    fp16 or int8,fp16, rows beside float32's; `input`: a fixed size (CxHxW) for open axes."""
    import torch

    from netspec.exporters import format_of_file

    kinds = check_kinds(quantize)  # before anything is loaded
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    path = Path(path)
    notes = [f"threads: {threads} (torch intra-op and onnxruntime intra-op alike)"]
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as scratch:
        name = None if path.is_dir() else format_of_file(path)
        if name is None:
            backends = source_backends(path, Path(scratch), threads, kinds, batches, notes, input)
        else:
            backends = model_file_backends(path, name, threads, kinds, notes)
            backends.shape = fill_open_axes(backends.card, input, backends.where)
        check_batches(batches, backends.shape, backends.where)
        rows = _timed_rows(backends, batches, seconds)
        score(backends, rows, notes)
    notes += _ratio_notes(rows)
    return rows, notes


def _timed_rows(backends: Backends, batches: list[int], seconds: float) -> list[Row]:
    import torch

    rows = []
    for batch in batches:
        x = np.random.default_rng(0).standard_normal((batch, *backends.shape), dtype=np.float32)
        calls = {name: (lambda m=m: m.run(x)) for name, m in backends.runtimes.items()}
        if backends.model is not None:
            tensor = torch.from_numpy(x)
            calls = {"pytorch eager": lambda: _torch_call(backends.model, tensor), **calls}
        rows += _time(calls, batch, seconds)
    return rows


def _ratio_notes(rows: list[Row]) -> list[str]:
    """How much faster each quantized row is than the float32 row on the same provider."""
    notes = []
    for row in rows:
        for kind in ("int8", "fp16"):
            if row.backend.endswith(" " + kind):
                base = next((r for r in rows if r.batch == row.batch
                             and r.backend == row.backend.removesuffix(kind) + "fp32"), None)
                if base is not None:
                    notes.append(f"{row.backend} vs fp32, batch {row.batch}: "
                                 f"{base.median_ms / row.median_ms:.2f}× (median latency)")
    return notes


def _torch_call(model, x):
    import torch

    with torch.inference_mode():
        return model(x)


BLOCK_SECONDS = 0.2  # each backend runs for this long at a stretch, then the next one
SETTLE_SECONDS = 0.02  # a pause between blocks: the previous backend's worker threads stop spinning


def time_in_blocks(calls: dict, seconds: float) -> dict[str, list[float]]:
    """name → the seconds of each call: blocks of calls per backend, alternating until each has
    had `seconds` and at least 10 calls, after a warm-up.

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
    return samples


def _time(calls: dict, batch: int, seconds: float) -> list[Row]:
    """A row per backend, timed by time_in_blocks; speed-ups against PyTorch eager."""
    samples = time_in_blocks(calls, seconds)
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
    """The rows as text; the accuracy columns only when some row has them."""
    scored = any(r.scored for r in rows)
    width = max([22, *(len(r.backend) for r in rows)])
    header = f"{'backend':<{width}} {'batch':>5} {'median ms':>10} {'p90 ms':>9} {'images/s':>10} {'vs eager':>9}"
    lines = [header + (f" {'top-1':>8} {'agree':>8}" if scored else "")]
    for r in rows:
        speed = f"{r.speedup:.2f}×" if r.speedup is not None else "—"
        line = (f"{r.backend:<{width}} {r.batch:>5} {r.median_ms:>10.3f} {r.p90_ms:>9.3f} "
                f"{r.per_second:>10,.0f} {speed:>9}")
        if scored:
            line += f" {_percent(r.accuracy):>8} {_percent(r.agreement):>8}"
        lines.append(line)
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} %"
