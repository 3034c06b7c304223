"""`netspec eval RUN_DIR`: accuracy, per-class accuracy and the confusion matrix of a run.

`evaluate_run` returns an `Evaluation`; the CLI prints its `lines()`. It writes confusion.png
and eval.json into the run, as the lines say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from netspec.data.batches import Batches
from netspec.run import WEIGHTS, Run, load_run  # noqa: F401 (WEIGHTS, Run, load_run: where eval's callers found them)
from netspec.train.checkpoint import atomic_write_text
from netspec.train.classes import check_run_outputs
from netspec.train.metrics import (
    accuracy,
    confusion_text,
    per_class_accuracy,
    per_class_table,
    plot_confusion,
    validate,
)


@dataclass
class Evaluation:
    """One evaluation of a run's weights on a validation split, and the files it wrote."""

    run: Run
    data_name: str
    classes: list[str]
    confusion: torch.Tensor
    written: list[Path]

    @property
    def accuracy(self) -> float:
        return accuracy(self.confusion)

    def record(self) -> dict:
        """What eval.json holds."""
        return {"data": self.data_name, "weights": self.run.weights, "accuracy": self.accuracy,
                "per_class": dict(zip(self.classes, per_class_accuracy(self.confusion))),
                "confusion": self.confusion.tolist()}

    def lines(self) -> list[str]:
        correct, total = int(self.confusion.diag().sum()), int(self.confusion.sum())
        return [f"{self.run.directory} ({self.run.weights} weights, epoch {self.run.meta.get('epoch')}) on "
                f"{self.data_name} validation: accuracy {self.accuracy * 100:.2f}% ({correct}/{total})",
                per_class_table(self.classes, self.confusion),
                confusion_text(self.classes, self.confusion),
                f"wrote {' and '.join(map(str, self.written))}"]


def evaluate_run(run_dir: Path, data_name: str | None = None, data_root: str | None = None,
                 weights: str = "best", batch_size: int = 256) -> Evaluation:
    run = load_run(run_dir, weights)
    data = run.validation_data(data_name, data_root)
    check_run_outputs(tuple(run.model.netspec["output"]), data, run.directory, run.labels, run.trained_on)
    batches = Batches(data, "val", batch_size, torch.device("cpu"), normalize=run.card.normalize)
    _, confusion = validate(run.model, batches, len(data.classes))
    evaluation = Evaluation(run, data.name, list(data.classes), confusion,
                            [run.directory / "confusion.png", run.directory / "eval.json"])
    plot_confusion(data.classes, confusion, evaluation.written[0])
    atomic_write_text(evaluation.written[1], json.dumps(evaluation.record(), indent=2) + "\n")
    return evaluation
