"""Benchmark: `netspec check` end to end, another checkout (before a change) against this one.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/check_before_after.py /tmp/before [--spec specs/torchvision/resnet50.yaml] [--runs 30]

Each side runs `python <checkout>/cli.py check SPEC` in a fresh child (stdout discarded) with the
checkout first on PYTHONPATH, one untimed warm-up each, then --runs runs per side, alternating
the order every round so drift on the machine hits both alike. Prints each side's median and
minimum wall time and the ratios after/before (< 1: this checkout is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a checkout of the earlier commit")
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "torchvision" / "resnet50.yaml")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    sides = {name: ([sys.executable, str(tree / "cli.py"), "check", str(args.spec.resolve())],
                    dict(os.environ, PYTHONPATH=str(tree)))
             for name, tree in (("before", args.before.resolve()), ("after", ROOT))}
    times = {name: [] for name in sides}
    for command, env in sides.values():
        timed(command, env)  # warm-up: files in the page cache, bytecode compiled
    for round_ in range(args.runs):
        for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
            times[name].append(timed(*sides[name]))
    for name, values in times.items():
        print(f"{name:6}  median {statistics.median(values):.3f} s  min {min(values):.3f} s")
    median = statistics.median(times["after"]) / statistics.median(times["before"])
    print(f"after/before: median {median:.3f}, min {min(times['after']) / min(times['before']):.3f} "
          f"({args.runs} runs each; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
