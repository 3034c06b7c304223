"""Metrics on disk and on screen: metrics.jsonl, curves.png, per-class accuracy, confusion."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from netspec.train.checkpoint import atomic_write


def append_jsonl(path: Path, record: dict) -> None:
    """One line per epoch, fsync'ed: a kill leaves at most a partial last line (readers skip it)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return records


def rewrite_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"))


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """classes×classes counts: row = true class, column = predicted class."""
    flat = labels.to(torch.int64) * classes + predictions.to(torch.int64)
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    totals = confusion.sum(1)
    return [None if t == 0 else (confusion[i, i] / t).item() for i, t in enumerate(totals.tolist())]


def per_class_table(names: list[str], confusion: torch.Tensor) -> str:
    accuracy = per_class_accuracy(confusion)
    width = max(len("class"), *(len(n) for n in names))
    lines = [f"{'class':<{width}}  accuracy  samples"]
    for name, acc, total in zip(names, accuracy, confusion.sum(1).tolist()):
        shown = "     n/a" if acc is None else f"{acc * 100:7.2f}%"
        lines.append(f"{name:<{width}}  {shown}  {total:7d}")
    return "\n".join(lines)


def confusion_text(names: list[str], confusion: torch.Tensor) -> str:
    width = max(5, *(len(n) for n in names), len(str(int(confusion.max()))) + 1)
    header = " " * width + " " + " ".join(f"{n[:width]:>{width}}" for n in names)
    rows = [f"{name[:width]:>{width}} " + " ".join(f"{v:>{width}d}" for v in row)
            for name, row in zip(names, confusion.tolist())]
    return "true \\ predicted\n" + "\n".join([header, *rows])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: list[dict], path: Path, run_name: str | None = None) -> None:
    """curves.png: loss and accuracy per epoch, titled with the run's name (default: the folder
    `path` is in, i.e. the run directory), so that two such files side by side can be told apart."""
    plt = _pyplot()
    figure = curves_figure(records, run_name if run_name is not None else path.parent.name)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)


def curves_figure(records: list[dict], run_name: str):
    """The matplotlib figure of plot_curves (the caller closes it)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [r["epoch"] for r in records]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    # a run name is a file name: `$` in it must not switch matplotlib to mathtext
    figure.suptitle(run_name, parse_math=False)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss_axes.plot(epochs, [r[key] for r in records], marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "validation")):
        acc_axes.plot(epochs, [r[key] * 100 for r in records], marker="o", label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, acc_axes):
        # epochs are whole numbers: integer ticks only, even for a one-epoch run (min_n_ticks=1,
        # and half an epoch of margin so that the range holds an integer)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if epochs:
            axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return figure


def plot_confusion(names: list[str], confusion: torch.Tensor, path: Path) -> None:
    plt = _pyplot()
    size = max(4.0, 0.45 * len(names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(confusion.numpy(), cmap="Blues")
    axes.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true")
    axes.set_xticklabels(names, rotation=90)
    axes.set_yticklabels(names)
    if len(names) <= 20:
        limit = confusion.max().item() / 2
        for (i, j), value in zip(((i, j) for i in range(len(names)) for j in range(len(names))),
                                 confusion.flatten().tolist()):
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > limit else "black",
                      fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)


TOP5_MIN_CLASSES = 10  # top-5 accuracy is reported from this many classes on (with fewer it says little)


def validate(model: torch.nn.Module, batches, classes: int, amp_dtype=None) -> tuple[float, torch.Tensor]:
    """(cross-entropy summed over the samples, confusion matrix) of `model` on `batches`."""
    loss_sum, confusion, _ = validate_top5(model, batches, classes, amp_dtype)
    return loss_sum, confusion


@torch.no_grad()
def validate_top5(model: torch.nn.Module, batches, classes: int,
                  amp_dtype=None) -> tuple[float, torch.Tensor, int | None]:
    """validate()'s two, and how many samples have their true class among the 5 highest outputs
    (None with fewer than TOP5_MIN_CLASSES classes).

    A model with more outputs than the data has classes is scored on the first `classes`
    outputs only (an extra output must never count as "the last class"). Training and eval
    never get here with one: netspec.train.classes.check_outputs / check_run_outputs refuse it."""
    model.eval()
    loss_sum, confusion = 0.0, torch.zeros(classes, classes, dtype=torch.int64)
    top5 = 0 if classes >= TOP5_MIN_CLASSES else None
    for x, y in batches.epoch(0, 0):
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x).float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        confusion += confusion_matrix(logits[:, :classes].argmax(1).cpu(), y.cpu(), classes)
        if top5 is not None:
            top5 += int((logits[:, :classes].topk(5, 1).indices == y[:, None]).any(1).sum())
    return loss_sum, confusion, top5


def accuracy(confusion: torch.Tensor) -> float:
    return int(confusion.diag().sum()) / max(int(confusion.sum()), 1)
