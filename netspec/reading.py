"""Reading spec and included files without trusting them.

Only regular files are read (a FIFO must not block, `/dev/zero` must not stream forever), at
most MAX_BYTES + 1 bytes whatever `stat` claims, and every OS-level failure (symlink loops,
names too long, permissions) becomes one `UnreadableSource` error naming the file.
`include:` may read only inside an include root, within a budget of files and bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from netspec.errors import Diagnostic, Mark, SpecError

MAX_BYTES = 1 << 20  # 1 MiB: the largest shipped spec is under 5 KiB
MAX_INCLUDE_DEPTH = 16  # files including files: the shipped specs nest one deep; 16 leaves room for any layering
# Every `include:` occurrence counts, repeats too: ten files that each include the next ten times
# would otherwise load 10^10 files. 64 is 60× the most any shipped spec uses (one).
MAX_INCLUDE_FILES = 64
# Bytes of all included files together (repeats counted): 60× the shipped include (~2 KB). The
# YAML parser gets through only ~0.3 MB/s of dense YAML; 128 KiB keeps includes to ~0.5 s at worst.
MAX_INCLUDE_BYTES = 1 << 17
PROJECT_MARKER = "netspec.toml"  # a folder holding it is a project: its whole tree is the include root
_READ_CHUNK = 1 << 16
# characters of a file name echoed in a message: an ENAMETOOLONG name is ~4 KiB of noise
_LONGEST_NAME_SHOWN = 120


class UnreadableSource(SpecError):
    """A spec or included file that cannot be read at all (missing, not a regular file, too big…).

    `reason` is the problem without the file's name, so an `include:` can report it at the
    include line; on its own it is reported at `name:1:1` (or without a position if missing)."""

    def __init__(self, name: str, reason: str, hint: str | None = None, missing: bool = False):
        self.name, self.reason, self.hint = name, reason, hint
        diagnostic = Diagnostic(None, "", f"{name}: {reason}", hint) if missing \
            else Diagnostic(Mark(name, 1, 1), "", reason, hint)
        super().__init__([diagnostic])


def shorten_name(name: str) -> str:
    """A file name short enough to echo (a 4,000-character name must not flood the terminal)."""
    if len(name) <= _LONGEST_NAME_SHOWN:
        return name
    return f"{name[:_LONGEST_NAME_SHOWN // 2]}…{name[-_LONGEST_NAME_SHOWN // 3:]} ({len(name):,} characters)"


def read_source(path: str | Path, name: str | None = None) -> str:
    """The text of a spec or included file; raises `UnreadableSource` or a positioned `SpecError`."""
    name = shorten_name(name or str(path))
    raw = _read_capped(Path(path), name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError.at(Mark(name, line, col), "",
                           f"file is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return text  # control characters are refused by parse_yaml, the one gate every text passes


_OS_REASONS = {
    errno.ELOOP: ("is a symbolic link loop (or too many links deep)", None),
    errno.ENAMETOOLONG: ("file name too long for the operating system", None),
    errno.EACCES: ("permission denied", "check the file's permissions"),
    errno.EPERM: ("permission denied", "check the file's permissions"),
    errno.ENOTDIR: ("no such file (a part of the path is not a folder)", None),
    errno.EISDIR: ("is a directory, expected a YAML spec file", None),
}


def _read_capped(path: Path, name: str) -> bytes:
    """At most MAX_BYTES + 1 bytes of a regular file; never blocks on a FIFO or streams a device."""
    if "\0" in str(path):
        raise UnreadableSource(name, "file name contains a NUL character")
    try:
        info = os.stat(path)  # follows symlinks, like the open below
        _require_regular(info.st_mode, name)
        if info.st_size > MAX_BYTES:
            raise UnreadableSource(name, f"file is {info.st_size:,} bytes, "
                                         f"over the {MAX_BYTES:,}-byte limit for a spec")
        # O_NONBLOCK: if the file was swapped for a FIFO since the stat, open must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableSource(name, "no such file", missing=True) from None
    except OSError as e:
        reason, hint = _OS_REASONS.get(e.errno, (e.strerror or "cannot be read", None))
        raise UnreadableSource(name, reason, hint) from None
    try:
        _require_regular(os.fstat(fd).st_mode, name)
        chunks, total = [], 0
        while total <= MAX_BYTES:  # st_size is not trusted: it may grow, or lie (procfs says 0)
            chunk = os.read(fd, min(_READ_CHUNK, MAX_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise UnreadableSource(name, e.strerror or "cannot be read") from None
    finally:
        os.close(fd)
    if total > MAX_BYTES:
        raise UnreadableSource(name, f"file is over the {MAX_BYTES:,}-byte limit for a spec")
    return b"".join(chunks)


class NotRegularFile(OSError):
    """A path that names a FIFO, device, socket or directory where a file's content is wanted."""


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file (links followed), else NotRegularFile.
    O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; it is then refused by
    its fstat, so there is no race with a check made before the open. Other OSErrors propagate."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                             "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _require_regular(mode: int, name: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise UnreadableSource(name, "is a directory, expected a YAML spec file")
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    raise UnreadableSource(name, f"is {kind}, not a regular file", "a spec is read from a plain file")


# -- include: the root and the budgets -----------------------------------------------------------

def find_include_root(folder: str | Path) -> Path:
    """The nearest folder at or above `folder` holding `netspec.toml`, else `folder` itself.

    Walks up the folder as named (not symlink-resolved: includes resolve against it too);
    the answer is resolved, for the containment test."""
    start = Path(os.path.abspath(folder))
    for candidate in (start, *start.parents):
        try:
            if (candidate / PROJECT_MARKER).is_file():
                return Path(os.path.realpath(candidate))
        except OSError:  # an unreadable parent folder declares nothing
            continue
    return Path(os.path.realpath(start))


def include_root_for(explicit: str | Path | None, spec_folder: Path) -> Path:
    """`explicit` (from --include-root), checked and resolved, or the default for `spec_folder`."""
    if explicit is None:
        return find_include_root(spec_folder)
    folder = Path(explicit)
    try:
        is_folder = stat.S_ISDIR(os.stat(folder).st_mode)
    except (OSError, ValueError):  # missing, a loop, a name too long…
        is_folder = False
    if not is_folder:
        raise SpecError.at(None, "--include-root", f"{shorten_name(str(folder))} is not a folder")
    return Path(os.path.realpath(folder))


class IncludeSources:
    """What `include:` may read: files inside `root`, MAX_INCLUDE_FILES loads, MAX_INCLUDE_BYTES bytes."""

    def __init__(self, root: Path):
        self.root = root
        self.files = 0
        self.bytes = 0
        self.exhausted = False
        # (the including file as the loader named it, the name it includes) → (resolved file, its text as
        # read): what the spec was built from, so a run's copy inlines these texts without reading again
        self.read: dict[tuple[str, str], tuple[Path, str]] = {}

    def admit(self, including: Path, name: str, stack: tuple) -> tuple[Path | None, tuple | None]:
        """(the resolved file to read, None), or (None, (message, hint)) for a refused include."""
        shown = shorten_name(name)
        if self.exhausted:
            return None, None
        if "\0" in name:
            return None, (f"`{shown}`: file name contains a NUL character", None)
        target = Path(os.path.realpath(including.parent / name))  # symlinks resolved before the test
        if not target.is_relative_to(self.root):
            return None, (f"`{shown}` is outside the include root {self.root}",
                          "includes stay inside the project: pass --include-root DIR to allow another folder, "
                          f"or put a {PROJECT_MARKER} in the project's top folder")
        if target in stack:
            cycle = " → ".join(p.name for p in (*stack[stack.index(target):], target))
            return None, (f"include cycle: {cycle}", None)
        if len(stack) > MAX_INCLUDE_DEPTH:
            return None, (f"includes nest deeper than {MAX_INCLUDE_DEPTH} files", None)
        self.files += 1
        if self.files > MAX_INCLUDE_FILES:
            self.exhausted = True
            return None, (f"more than {MAX_INCLUDE_FILES} included files in all (each repeat counts)",
                          "include each file once, from the file that needs it")
        return target, None

    def charge(self, text: str) -> tuple | None:
        self.bytes += len(text.encode("utf-8", "surrogatepass"))
        if self.bytes > MAX_INCLUDE_BYTES:
            self.exhausted = True
            return (f"included files hold more than {MAX_INCLUDE_BYTES:,} bytes in all (each repeat counts)",
                    "include each file once, from the file that needs it")
        return None
