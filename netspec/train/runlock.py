"""One training process per run directory: an exclusive `flock` on `<run>/.lock`.

The holder writes its pid, host and start time into the file, so a second `netspec train`
into the same run can say who holds it. The kernel releases a flock when its holder dies
(even by SIGKILL), so a crashed run never blocks a later `--resume`; the file itself stays
(deleting a lock file races with the next process opening it).

Under `--nproc N` the launcher holds the lock (and lends its descriptor to torchrun); the
rank-0 worker finds it held by the pid in LAUNCHER_ENV and goes on without taking it, the
other ranks never try.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

from netspec.errors import RunError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no advisory locks, train unguarded as before
    fcntl = None

LOCK_NAME = ".lock"
# The holder's record is ~100 bytes; read no more than this of a file someone else wrote.
MAX_LOCK_BYTES = 4096
LAUNCHER_ENV = "NETSPEC_RUN_LOCKED_BY"


class RunLock:
    """Held from acquire() to release() (or the process's end)."""

    def __init__(self, run_dir: Path, fd: int | None):
        self.run_dir = run_dir
        self.fd = fd

    @classmethod
    def acquire(cls, run_dir: Path, option: str) -> "RunLock":
        """Lock `run_dir` or raise RunError (under `option`, e.g. --out) naming the holder."""
        run_dir = Path(run_dir)
        if fcntl is None:
            return cls(run_dir, None)
        fd = _open_lock_file(run_dir / LOCK_NAME, option)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if holder.get("pid") == _launcher_pid() and holder.get("host") == socket.gethostname():
                return cls(run_dir, None)  # our own `--nproc` launcher holds it for us
            raise RunError.at(None, option, f"{run_dir} is being trained by {_describe(holder)}; "
                               "a run directory takes one training at a time",
                               "wait for it to finish (or stop it), or choose another --out") from None
        except OSError as e:
            os.close(fd)
            raise RunError.at(None, option, f"cannot lock {run_dir / LOCK_NAME} ({e.strerror})",
                               "put the run on a filesystem that supports locks (flock)") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the holder goes unnamed
            pass
        return cls(run_dir, fd)

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None

    def __del__(self) -> None:  # a caller that forgets release() must not keep the run locked
        self.release()


def _open_lock_file(path: Path, option: str) -> int:
    # O_NOFOLLOW: a planted symlink is never written through; O_NONBLOCK: a FIFO never hangs us.
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise RunError.at(None, option, f"cannot open the run lock {path} ({e.strerror})",
                           "it must be a regular file (not a link or a directory)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError.at(None, option, f"the run lock {path} is not a regular file", "remove it")
    return fd


def _holder(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, MAX_LOCK_BYTES, 0).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe(holder: dict) -> str:
    pid = holder.get("pid")
    if not (isinstance(pid, int) and not isinstance(pid, bool)):
        return "another process"
    text = f"another process (pid {pid}"
    for key, joiner in (("host", " on "), ("started", ", since ")):
        value = holder.get(key)
        if isinstance(value, str):
            text += joiner + "".join(c for c in value[:64] if c.isprintable())  # someone else's text
    return text + ")"


def _launcher_pid() -> int | None:
    value = os.environ.get(LAUNCHER_ENV, "")
    return int(value) if value.isdigit() and len(value) <= 10 else None


def launcher_env(lock: RunLock) -> dict[str, str]:
    """The environment that lets the workers of this launcher's run go on under its lock."""
    return {**os.environ, LAUNCHER_ENV: str(os.getpid())} if lock.held else dict(os.environ)
