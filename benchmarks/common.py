"""Helpers shared by the benchmark scripts (run them as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import os
import platform
import subprocess


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A Markdown table, ready to paste into docs/benchmarks.md."""
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]

    def line(cells) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for text in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if text.startswith("Model name:"):
                cpu = text.split(":", 1)[1].strip()
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its reaped
    children), or None off Linux: their difference over a timed span is other processes' load."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system
