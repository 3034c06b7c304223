"""A run's logs besides its checkpoints: metrics.jsonl, metrics.csv and, with `--tensorboard`,
TensorBoard event files in RUN/tensorboard/.

metrics.jsonl is the record (resume reads it back); metrics.csv holds the same rows for
spreadsheets and pandas, a header first. A resume rewrites both to the epochs before it, then
appends. TensorBoard's x axis is the optimiser step: each epoch's scalars at the epoch's last
step (and `epoch` itself as a scalar), the train loss every `--log-every` steps; a resumed run's
writer purges the steps after the checkpoint it resumed from, so redone steps are not shown twice.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from netspec.errors import RunError
from netspec.train import checkpoint as ckpt
from netspec.train.metrics import append_jsonl, read_jsonl, rewrite_jsonl

# metrics.jsonl holds ~250 bytes per epoch; a larger one is not a run's own (read before resuming).
MAX_METRICS_BYTES = 64 * 2**20
METRIC_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc")  # what curves.png plots
TENSORBOARD_DIR = "tensorboard"
# record key → TensorBoard tag, per epoch (val_top5 only when the data has ≥ 10 classes)
EPOCH_TAGS = {"epoch": "epoch", "train_loss": "train/loss", "train_acc": "train/accuracy", "val_loss": "val/loss",
              "val_acc": "val/accuracy", "val_top5": "val/top5", "lr": "lr"}
STEP_TAG = "train/loss_step"  # every --log-every steps


def metrics_before(path: Path, epoch: int) -> list[dict]:
    """The epochs before `epoch` from metrics.jsonl; lines that are not well-formed records
    (a line cut by a kill, or an edited file) are dropped."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ckpt.damaged(path, "not a regular file", kind=RunError)
    if path.exists() and path.stat().st_size > MAX_METRICS_BYTES:
        raise ckpt.damaged(path, f"larger than {MAX_METRICS_BYTES:,} bytes: not this run's metrics", kind=RunError)

    def well_formed(r) -> bool:
        return (isinstance(r, dict) and isinstance(r.get("epoch"), int) and not isinstance(r["epoch"], bool)
                and all(isinstance(r.get(k), (int, float)) and not isinstance(r[k], bool) for k in METRIC_FIELDS))

    return [r for r in read_jsonl(path) if well_formed(r) and r["epoch"] < epoch]


def csv_text(records: list[dict], header: list[str] | None = None) -> str:
    """CSV of `records`: the header (default: the first record's keys) unless given, then one row each."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header or list(records[0]), extrasaction="ignore", lineterminator="\n")
    if header is None:
        writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


class RunLog:
    """The main process's logs of one run (every method is a no-op on the other processes)."""

    def __init__(self, run_dir: Path, tensorboard: bool, log_every: int, main: bool = True):
        self.jsonl, self.csv, self.main = run_dir / "metrics.jsonl", run_dir / "metrics.csv", main
        self.tensorboard_dir = run_dir / TENSORBOARD_DIR if tensorboard and main else None
        self.log_every = log_every if self.tensorboard_dir else 0
        self.purge_step: int | None = None
        self._writer = None

    def restore(self, epoch: int, global_step: int) -> None:
        """A resume from the start of `epoch` (or within it) after `global_step` steps."""
        if not self.main:
            return
        records = metrics_before(self.jsonl, epoch)
        rewrite_jsonl(self.jsonl, records)
        ckpt.atomic_write_text(self.csv, csv_text(records) if records else "")
        self.purge_step = global_step + 1

    def epoch(self, record: dict, global_step: int) -> None:
        if not self.main:
            return
        append_jsonl(self.jsonl, record)
        header = self._csv_header()
        with open(self.csv, "a", encoding="utf-8", newline="") as f:
            f.write(csv_text([record], header))
            f.flush()
            os.fsync(f.fileno())
        writer = self.writer()
        if writer is not None:
            for key, tag in EPOCH_TAGS.items():
                if key in record:
                    writer.add_scalar(tag, record[key], global_step)
            writer.flush()

    def step(self, global_step: int, loss: torch.Tensor) -> None:
        """The train loss of step `global_step` (reads it from the device only when it is logged)."""
        if self.log_every and global_step % self.log_every == 0:
            self.writer().add_scalar(STEP_TAG, loss.item(), global_step)

    def writer(self):
        if self.tensorboard_dir is not None and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

            self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=self.purge_step)
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _csv_header(self) -> list[str] | None:
        """The existing file's header (rows are appended in its order), or None for a new or empty file."""
        if not self.csv.exists() or self.csv.stat().st_size == 0:
            return None
        with open(self.csv, encoding="utf-8", newline="") as f:
            first = f.readline(4096)
        return next(csv.reader([first]), None) or None
