"""Bounds and parsers of the options that are not training settings.

Training settings are bounded in netspec/train/config.py, so a spec's `train:` section gets the
same bounds. Typer reports a value outside a `min=`/`max=` as a usage error naming the option
(exit 2); the parsers here raise OptionError naming it.
"""

from __future__ import annotations

import os

from netspec.errors import OptionError, printable
from netspec.train.config import MAX_BATCH_SIZE  # one bound for every batch option, training's included

MAX_NPROC = 64  # `train --nproc`: each process is a whole Python + torch (~0.5 GB) on this machine
THREADS_PER_CORE = 4  # `bench --threads`: past a few per core it measures contention; 100,000 crashed ORT
MAX_THREADS = THREADS_PER_CORE * (os.cpu_count() or 1)
MAX_BENCH_SECONDS = 600.0  # `bench --seconds`, per backend and batch size: a hang above this is a typo
MAX_BENCH_BATCHES = 16  # `bench --batch` sizes: each one costs --seconds per backend
MAX_TOP_K = 100_000  # `infer --top-k` (clamped to the model's classes): a bound on the JSON's size
WEIGHTS = ("best", "last")  # the checkpoint names a run directory holds


def batch_size(text: str, flag: str, alternative: str = "") -> int:
    """A batch size written by the user: ASCII digits only (`²`.isdigit() is true too), 1..MAX_BATCH_SIZE."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 9 and 1 <= int(digits) <= MAX_BATCH_SIZE:
        return int(digits)
    raise OptionError.at(None, flag, f"expected {alternative}a batch size from 1 to {MAX_BATCH_SIZE}, "
                         f"got `{printable(text[:40])}`")


def batch_sizes(text: str, flag: str) -> list[int]:
    """`1,32`: comma-separated batch sizes, at most MAX_BENCH_BATCHES of them."""
    sizes = [b for b in text.split(",") if b.strip()] or [text]
    if len(sizes) > MAX_BENCH_BATCHES:
        raise OptionError.at(None, flag, f"{len(sizes)} batch sizes; at most {MAX_BENCH_BATCHES}")
    return [batch_size(b, flag) for b in sizes]


def check_seconds(seconds: float, flag: str) -> None:
    if not 0 < seconds <= MAX_BENCH_SECONDS:  # also refuses nan
        raise OptionError.at(None, flag, f"expected a number of seconds in (0, {MAX_BENCH_SECONDS:g}], got {seconds}")


def check_weights(weights: str) -> None:
    if weights not in WEIGHTS:  # the name becomes a file name in the run directory
        raise OptionError.at(None, "--weights", f"expected best or last, got `{printable(weights[:40])}`")
