"""Benchmark: `--amp bf16` and `--compile` against the default, for every shipped MNIST/CIFAR-size spec.

    .venv/bin/python benchmarks/amp_compile.py [--rounds 2] [--epochs 3] [--threads 1]
        [--specs lenet,mnist_cnn,cnn_bn,vgg11,resnet_cifar,se_resnet_cifar] [--json FILE]

Everything runs in this one process through `netspec.train.loop.train()` (what `netspec train`
runs), progress off. Data: the 1×28×28 specs train on `digits` (1437 train / 360 val images), the
3×32×32 ones on `synthetic` (2048 / 256, 10 classes), without augmentation so that the accuracies
say something after a few epochs; every other setting is the spec's own `train:`.

Settings: default (fp32, eager), `amp: bf16`, `compile: true`; each round runs all three in turn,
the order rotating from round to round, so that drift on the (shared) machine hits them alike.
Every run uses the same seed, so the three differ only in their numerics.

Threads: 1 by default (torch.set_num_threads): on a machine shared with other work, 2 threads on
2 cores stall whenever another process takes a core (LeNet measured 439 img/s with 2 threads against
12,089 with 1 in the same minute), which would swamp the differences measured here.

Timing: the training images/s of epochs 2..N from metrics.jsonl (`images_per_s`: training steps
only, no validation or checkpoint), so torch.compile's compilation in epoch 1 is left out (and
reported apart: epoch 1's extra seconds over the later epochs' mean). Reported per spec and
setting: the median over rounds of that img/s, its ratio to the default's, the final validation
accuracy of each round, and the CPU other processes used meanwhile (`others`, cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import cpu_seconds, machine, print_table  # noqa: E402

from netspec.progress import Progress  # noqa: E402
from netspec.train.loop import train  # noqa: E402

SPECS = ("lenet", "mnist_cnn", "cnn_bn", "vgg11", "resnet_cifar", "se_resnet_cifar")
SETTINGS = {"default": {}, "bf16": {"amp": "bf16"}, "compile": {"compile": True}}


def data_of(spec: str) -> dict:
    if spec in ("lenet", "mnist_cnn"):
        return {"data": "digits"}
    return {"data": "synthetic", "augment": {"pad": 0, "flip": False}}


def one_run(spec: str, setting: str, epochs: int, out: Path) -> dict:
    before, t0 = cpu_seconds(), time.perf_counter()
    overrides = {**data_of(spec), "epochs": epochs, **SETTINGS[setting]}
    run_dir = train(ROOT / "specs" / f"{spec}.yaml", overrides, out=out, progress=Progress(enabled=False))
    wall = time.perf_counter() - t0
    after = cpu_seconds()
    others = None
    if before and after:
        others = max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    later = records[1:] or records
    images = sum(r["images_per_s"] * r["seconds"] for r in later)
    seconds = sum(r["seconds"] for r in later)
    mean_later = seconds / len(later)
    return {"spec": spec, "setting": setting, "img_s": images / seconds, "val_acc": records[-1]["val_acc"],
            "first_extra_s": records[0]["seconds"] - mean_later, "wall": wall, "others": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--specs", default=",".join(SPECS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {machine()}, torch {torch.__version__}, {args.threads} threads", flush=True)
    results = []
    names = list(SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.specs.split(","):
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for setting in order:
                    result = one_run(spec, setting, args.epochs, Path(tmp) / f"{spec}-{setting}-{r}")
                    result["round"] = r
                    results.append(result)
                    print(json.dumps(result), flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=1))
    table(results)


def table(results: list[dict]) -> None:
    rows = []
    for spec in dict.fromkeys(r["spec"] for r in results):
        base = statistics.median(r["img_s"] for r in results if r["spec"] == spec and r["setting"] == "default")
        for setting in SETTINGS:
            runs = [r for r in results if r["spec"] == spec and r["setting"] == setting]
            if not runs:
                continue
            speed = statistics.median(r["img_s"] for r in runs)
            others = [r["others"] for r in runs if r["others"] is not None]
            rows.append((spec, setting, f"{speed:,.0f}", f"{speed / base:.2f}",
                         " / ".join(f"{r['val_acc'] * 100:.1f}" for r in runs),
                         f"{max(0.0, statistics.median(r['first_extra_s'] for r in runs)):.1f}",
                         f"{max(others):.2f}" if others else "?"))
    print_table(("spec", "setting", "img/s (epochs 2..N, median)", "÷ default", "final val acc % per round",
                 "epoch 1 extra s", "others (cores, max)"), rows)


if __name__ == "__main__":
    main()
