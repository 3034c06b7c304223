"""`netspec runs [DIR]`: what state each run directory under DIR is in, from what it records.

    running      its lock is held (netspec/train/runlock.py): a training process is in it now
    finished     its last epoch's end and its end-of-run outputs are written (rundir.unfinished_since,
                 what `--resume` goes by: a finished run is not resumed), or `--patience` stopped it
                 early (its last epoch ended `patience` epochs after the best; the note says so)
    interrupted  neither: stopped by Ctrl-C, a kill, a crash or divergence (`--resume` continues it),
                 or stopped before its first checkpoint
    damaged      its config.json cannot be read as a run's

Epochs done are the whole epochs of the newest checkpoint (last.safetensors, else best), planned
those of config.json; the best validation accuracy is the one training saved with
best.safetensors; the date is when the run last wrote a checkpoint (or its config). Everything is
read from file headers only (bounded as eval reads them: config.json, safetensors headers, the
lock's record); a file that cannot be read is the run's `problem`, never an error of the listing.

Whether the lock is held is asked with a non-blocking shared flock, released at once: a training
starting into that very run in the same microseconds would be refused as if the run were busy.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from netspec.errors import NetspecError, RunError, printable
from netspec.train.checkpoint import read_metadata
from netspec.train.rundir import read_config, unfinished_since
from netspec.train.runlock import LOCK_NAME, MAX_LOCK_BYTES

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, no run is seen as running
    fcntl = None

CHECKPOINTS = ("last.safetensors", "best.safetensors")  # newest first


@dataclass
class RunStatus:
    directory: Path
    status: str  # running | finished | interrupted | damaged
    epochs_done: int | None = None
    epochs_planned: int | None = None
    best_val_acc: float | None = None
    date: float = 0.0  # seconds since the epoch
    data: str | None = None
    holder: dict | None = None  # the running process's record (pid, host, started)
    note: str | None = None  # why a finished run ended before its planned epochs (--patience)
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"run": str(self.directory), "status": self.status, "epochs_done": self.epochs_done,
                "epochs_planned": self.epochs_planned, "best_val_acc": self.best_val_acc,
                "date": datetime.fromtimestamp(self.date).astimezone().isoformat(timespec="seconds"),
                "data": self.data, "holder": self.holder, "note": self.note, "problems": list(self.problems)}


def list_runs(folder: Path) -> list[RunStatus]:
    """The run directories in `folder` (those holding a config.json; `folder` itself if it is
    one), oldest first. A folder that cannot be listed is a RunError."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return [run_status(folder)]
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        raise RunError.at(None, "DIR", f"{printable(folder)}: no such directory",
                          "give the folder runs are in (`netspec train` writes them under ./runs)") from None
    except NotADirectoryError:
        raise RunError.at(None, "DIR", f"{printable(folder)} is not a directory") from None
    except OSError as e:
        raise RunError.at(None, "DIR", f"cannot list {printable(folder)} ({e.strerror})") from None
    runs = [run_status(p) for p in entries
            if not p.name.startswith(".") and p.is_dir() and os.path.lexists(p / "config.json")]
    return sorted(runs, key=lambda r: (r.date, str(r.directory)))


def run_status(run_dir: Path) -> RunStatus:
    """One run's status, epochs, best validation accuracy and date; problems as text."""
    run_dir = Path(run_dir)
    holder = lock_holder(run_dir)
    run = RunStatus(run_dir, "running" if holder is not None else "interrupted", holder=holder,
                    date=_newest_write(run_dir))
    problems = []
    try:
        train = read_config(run_dir)["train"]
    except NetspecError as error:
        run.status = "damaged" if holder is None else run.status
        run.problems = (_first(error),)
        return run
    run.epochs_planned, run.data = train["epochs"], train.get("data")
    metas = {}
    for name in CHECKPOINTS:
        metas[name], problem = _metadata(run_dir / name)
        problems += [problem] if problem else []
    last, best = metas["last.safetensors"], metas["best.safetensors"]
    if best is not None and _number(best.get("val_acc")):
        run.best_val_acc = float(best["val_acc"])
    newest = next((meta for meta in (last, best) if meta is not None and _count(meta.get("epoch"))), None)
    if newest is not None:
        run.epochs_done = newest["epoch"] - (0 if newest.get("complete") is True else 1)
    elif not problems:
        run.epochs_done = 0  # stopped (or still starting) before its first checkpoint
    if holder is None and newest is not None:
        run.note = _stopped_early(run_dir, train, last, best)
        run.status = "finished" if run.note or unfinished_since(run_dir) is None else "interrupted"
    run.problems = tuple(problems)
    return run


def _stopped_early(run_dir: Path, train: dict, last: dict | None, best: dict | None) -> str | None:
    """Why `--patience` ended the run before its planned epochs, if it did: its last epoch ended
    `patience` epochs after the best one (netspec/train/controls.py) and its end outputs are written."""
    from netspec.train.controls import early_stop_reason

    patience = train.get("patience")
    if not (_count(patience) and last and best and last.get("complete") is True and _count(last.get("epoch"))
            and _count(best.get("epoch")) and last["epoch"] < train["epochs"]
            and (run_dir / "per_class.json").exists()):
        return None
    return early_stop_reason(patience, last["epoch"], best["epoch"], float(best.get("val_acc") or 0))


def _metadata(path: Path) -> tuple[dict | None, str | None]:
    """A checkpoint's metadata, or None and why not (None, None: the file does not exist)."""
    if not os.path.lexists(path):
        return None, None
    try:
        return read_metadata(path), None
    except NetspecError as error:
        return None, _first(error)


def _newest_write(run_dir: Path) -> float:
    times = []
    for name in (*CHECKPOINTS, "config.json"):
        try:
            times.append((run_dir / name).stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def lock_holder(run_dir: Path) -> dict | None:
    """The record of the process holding the run's lock ({} when it names none), or None when
    the lock is free (or there is no lock file: the run was never trained here)."""
    if fcntl is None:
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _record(fd)
        except OSError:
            return None
        return None  # free: closing the descriptor releases the shared lock just taken
    finally:
        os.close(fd)


def _record(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, MAX_LOCK_BYTES, 0).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(record, dict):
        return {}
    kept = {k: record[k] for k in ("pid", "host", "started") if isinstance(record.get(k), (int, str))}
    return {k: v if isinstance(v, int) else printable(v[:64]) for k, v in kept.items() if not isinstance(v, bool)}


def _first(error: NetspecError) -> str:
    d = error.diagnostics[0]
    return printable(f"{d.where}: {d.message}" if d.where else d.message)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def table(runs: list[RunStatus], folder: Path) -> str:
    """One line per run (its problems and who trains it below it), aligned."""
    if not runs:
        return f"no runs in {printable(folder)} (a run directory holds a config.json)"
    rows = [("run", "status", "epochs", "best val", "date")]
    for r in runs:
        epochs = "/".join("?" if n is None else str(n) for n in (r.epochs_done, r.epochs_planned))
        best = "–" if r.best_val_acc is None else f"{r.best_val_acc * 100:.2f}%"
        date = datetime.fromtimestamp(r.date).strftime("%Y-%m-%d %H:%M") if r.date else "–"
        rows.append((printable(r.directory), r.status, epochs, best, date))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}  "
                     f"{row[4]}".rstrip())
        if i:
            lines += [f"  {_holder_line(runs[i - 1].holder)}"] if runs[i - 1].holder is not None else []
            lines += [f"  {runs[i - 1].note}"] if runs[i - 1].note else []
            lines += [f"  {problem}" for problem in runs[i - 1].problems]
    return "\n".join(lines)


def _holder_line(holder: dict) -> str:
    text = f"trained now by pid {holder['pid']}" if "pid" in holder else "trained now by another process"
    text += f" on {holder['host']}" if "host" in holder else ""
    return text + (f", since {holder['started']}" if "started" in holder else "")
