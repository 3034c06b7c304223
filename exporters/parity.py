"""What "onnxruntime agrees with PyTorch" counts, for an output of any shape.

One figure per output kind, each a fraction of things that can agree, so it is never above 100 %:
- N×K with K ≥ 2 (class scores): top-1 over samples, the classifier's decision;
- N×C×H×W with C ≥ 2 (a feature map): the argmax over the channel axis at each position;
- anything else (one score per sample, a single-channel map, other ranks): the values that lie
  within the parity tolerance of PyTorch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Measure:
    kind: str  # top1 | channel_argmax | values
    per_sample: int  # how many things agree or not in one sample's output
    channels: int = 0
    tolerance: float = 0.0

    @classmethod
    def for_output(cls, shape: tuple[int, ...], tolerance: float) -> "Measure":
        """`shape`: one sample's output shape (no batch axis)."""
        shape = tuple(int(d) for d in shape)
        if len(shape) == 1 and shape[0] >= 2:
            return cls("top1", 1)
        if len(shape) == 3 and shape[0] >= 2:
            return cls("channel_argmax", shape[1] * shape[2], channels=shape[0])
        return cls("values", math.prod(shape), tolerance=tolerance)

    @property
    def unit(self) -> str:
        return {"top1": "samples", "channel_argmax": "positions", "values": "values"}[self.kind]

    def agreeing(self, actual: np.ndarray, expected: np.ndarray) -> int:
        if self.kind == "values":
            return int((np.abs(actual - expected) <= self.tolerance).sum())
        return int((actual.argmax(1) == expected.argmax(1)).sum())  # class axis, or channel axis of N×C×H×W

    def describe(self, fraction: float) -> str:
        percent = f"{math.floor(fraction * 1000) / 10:.1f}%"  # 99.96 % is not shown as 100.0 %
        if self.kind == "top1":
            return f"top-1 agreement {percent}"
        if self.kind == "channel_argmax":
            return f"per-position argmax over the {self.channels} channels: agreement {percent}"
        return f"values within {self.tolerance:.0e}: {percent}"


@dataclass
class Agreement:
    measure: Measure
    agreeing: int
    total: int

    @property
    def fraction(self) -> float:
        return self.agreeing / self.total if self.total else 1.0

    def text(self) -> str:
        return f"{self.measure.describe(self.fraction)} ({self.agreeing:,} of {self.total:,} {self.measure.unit})"


PARITY_TOLERANCE = 1e-4  # the largest |exported − eager PyTorch| a kept file may show


@dataclass(kw_only=True)
class ParityFigures:
    """The parity figures every format's export report carries, and what they mean, held once.

    Keyword-only, so a format's report keeps its own fields first (`ExportReport(path, bytes, opset,
    batch, max_abs_diff=…, agreement=…)`); `COMPARED` names the two sides of the difference."""

    COMPARED: ClassVar[str] = "exported − torch"

    max_abs_diff: float
    agreement: Agreement
    real_samples: int = 0
    real_max_abs_diff: float | None = None
    real_agreement: Agreement | None = None
    notes: list[str] = field(default_factory=list)  # e.g. why real-sample parity was skipped

    def parity_text(self) -> str:
        return f"max |{self.COMPARED}| = {self.max_abs_diff:.2e}, {self.agreement.text()}"

    def parity_lines(self) -> list[str]:
        lines = [f"parity, random inputs: {self.parity_text()}"]
        if self.real_samples:
            lines.append(f"parity, {self.real_samples} validation samples: max |diff| = {self.real_max_abs_diff:.2e}, "
                         f"{self.real_agreement.text()}")
        return lines

    def disagrees(self) -> bool:
        """Past the tolerance anywhere, or one real sample decided differently."""
        return (self.max_abs_diff > PARITY_TOLERANCE or (self.real_max_abs_diff or 0) > PARITY_TOLERANCE
                or (self.real_samples > 0 and self.real_agreement.fraction < 1.0))
