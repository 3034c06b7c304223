"""The zoo table of docs/zoo.md: every specs/torchvision/*.yaml against torchvision's own figures.

    .venv/bin/python benchmarks/zoo_table.py [--runs 3] [--parity]

Per spec (its file stem is the torchvision builder):

* params: `netspec.check` of the spec, and torchvision's builder with `weights=None` (built on the
  meta device where the builder allows it; regnet's reads tensor values, so it is built for real);
* GMACs: `netspec.check` at torchvision's evaluation size, the first weights'
  `transforms().crop_size`, beside `weights.meta["_ops"]`, the GFLOPS column of torchvision's model
  table (which counts multiply-accumulates); metadata only, no download;
* check: `netspec check SPEC` end to end in a fresh child process (import + check + printing the
  table, stdout to a pipe), CPU time of the child's work as tests/test_check_budgets.py measures
  it (interpreter start-up excluded); the minimum and the median of `--runs` runs;
* `--parity`: also the eval-mode max |netspec − torchvision| / max |torchvision| after
  `load_torchvision`, at the reduced input tests/test_zoo.py uses (slow: builds every model twice).

Prints a Markdown table (ready to paste), the machine and its load (`uptime`) before and after.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, print_table  # noqa: E402

ZOO = ROOT / "specs" / "torchvision"

_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
start = time.process_time()
from netspec import cli
code = cli.main(sys.argv[1:])
sys.stderr.write(f"\\nELAPSED {{time.process_time() - start:.4f}}\\n")
sys.exit(code)
"""


def check_seconds(path: Path) -> float:
    done = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT)), "check", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=path.parent)
    if done.returncode != 0:
        raise SystemExit(f"netspec check {path} failed:\n{done.stderr}")
    return float(done.stderr.rpartition("\nELAPSED ")[2])


def torchvision_params(stem: str) -> int:
    import torch
    import torchvision

    def build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return getattr(torchvision.models, stem)(weights=None)

    try:
        with torch.device("meta"):
            model = build()
    except NotImplementedError:
        model = build()
    return sum(p.numel() for p in model.parameters())


def parity(stem: str) -> str:
    import torch

    import netspec
    from netspec.compile.weights import load_torchvision
    from tests.test_zoo import perturb, reduced, torchvision_model

    size = reduced(stem)
    torch.manual_seed(0)
    reference = perturb(torchvision_model(stem, size), size)
    model = netspec.build(netspec.load(ZOO / f"{stem}.yaml", input=f"3x{size}x{size}")).eval()
    load_torchvision(model, reference)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    return f"{(ours - theirs).abs().max().item() / theirs.abs().max().item():.1e} at {size}²"


def row(path: Path, runs: int, with_parity: bool) -> tuple[str, ...]:
    import torchvision

    import netspec

    stem = path.stem
    weights = list(torchvision.models.get_model_weights(stem))[0]
    crop = int(weights.transforms().crop_size[0])
    ours = netspec.check(netspec.load(path))
    at_eval = netspec.check(netspec.load(path, input=f"3x{crop}x{crop}"))
    theirs = torchvision_params(stem)
    gmacs, ops = at_eval.macs / 1e9, float(weights.meta["_ops"])
    times = [check_seconds(path) for _ in range(runs)]
    cells = (f"`{stem}`", f"{ours.params:,}", "=" if ours.params == theirs else f"≠ {theirs:,}",
             f"{crop}", f"{gmacs:.3f}", f"{ops:.3f}", "=" if abs(gmacs - ops) <= 0.0005 + 1e-9 else "≠",
             f"{min(times):.3f} / {statistics.median(times):.3f}")
    return (*cells, parity(stem)) if with_parity else cells


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="`netspec check` runs per spec (default 3)")
    parser.add_argument("--parity", action="store_true", help="also measure eval-mode outputs against torchvision")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load before: {uptime()}")
    header = ("builder", "params", "torchvision params", "eval size", "GMACs (netspec)", "torchvision `_ops`",
              "MACs", "check CPU s (min / median)")
    if args.parity:
        header = (*header, "eval max abs diff ÷ scale")
    rows = []
    for path in sorted(ZOO.glob("*.yaml")):
        try:
            rows.append(row(path, args.runs, args.parity))
        except (Exception, SystemExit) as e:  # a spec still being written: say so, keep the others
            rows.append((f"`{path.stem}`", f"error: {str(e).splitlines()[0][:60]}", *[""] * (len(header) - 2)))
    print()
    print_table(header, rows)
    print()
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
