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
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"
