"""Benchmark: training throughput of `netspec train` against the training loop PyTorch tutorials teach.

    .venv/bin/python benchmarks/train_throughput.py [--repeats 2] [--digits-epochs 15] [--cifar-epochs 5]
        [--plain-epochs 8] [--workers 0,2] [--threads 2] [--cases digits,cifar,cifar-plain] [--no-info]
        (or: make bench)

Target (from the design card): `netspec train` processes ≥ 2× as many training images per second
as the seed-style loop (a torch DataLoader over a Dataset with per-sample torchvision transforms,
with the same model, batch size and optimizer) at equal final validation accuracy. Reported as a
ratio netspec / seed loop (> 1 means netspec is faster), with both final accuracies.

Everything runs in this one process, with a fixed torch thread count (--threads, default 2):

* cases: (a) `digits`: specs/lenet.yaml on `digits` (1437 train / 360 val images at 1×28×28) with
  the spec's own train settings (15 epochs, batch 32, adam lr 0.002, cosine schedule, augment
  pad 2); (b) `cifar`: specs/cnn_bn.yaml on netspec's `synthetic` data at 3×32×32 (the CIFAR-shaped
  stand-in: 2048 train / 256 val images, 10 classes, a random template per class plus noise) with
  the spec's settings (batch 128, adam lr 0.001) plus augment pad 4 + flip, for --cifar-epochs;
  (c) `cifar-plain`: the same without augmentation, for --plain-epochs. (c) exists for the
  accuracy check: the synthetic templates are pixel noise, which a 4-pixel random shift destroys,
  so in (b) neither side gets much past chance in a few epochs, while in (c) both reach ~50 %.
* netspec side: exactly what `netspec.train.loop.train()` does (`prepare()` then `Trainer.run()`, the
  two lines of its body, so that the script can read the initial weights), with progress output
  off. Its training images/s comes from the run's metrics.jsonl (`images_per_s` × `seconds` per
  epoch: the training steps only, no validation, checkpoints or curves).
* seed-style side, written the way seed 003's `train()` / `evaluate()` / `fit()` are: a
  `torch.utils.data.Dataset` holding the uint8 images as torchvision's MNIST / CIFAR10 datasets do,
  whose `__getitem__` makes one PIL image and runs it through `transforms.Compose` (digits:
  RandomCrop(28, padding=2); CIFAR-shaped: seed 003's Pad(4), RandomHorizontalFlip(),
  RandomCrop(32); then ToTensor(), Normalize(mean, std)); `DataLoader(shuffle=True)` with 0 workers
  (what every seed uses) and, for fairness, with 2 workers (--workers); the loop `zero_grad / loss /
  backward / step / loss.item()`, then `evaluate()` on the validation loader after every epoch.
* the same for both sides: the images (the baseline takes the arrays that
  `netspec.data.load_data(...)` returns and makes PIL images of them), the train/val split and
  mean/std, the model (`netspec.build(spec)` after `torch.manual_seed(seed)`; the script checks
  that the initial weights equal the netspec run's), batch size, optimizer and lr, the lr schedule
  (cosine per step through `LambdaLR`, the same closed form as netspec's), the number of epochs and
  of steps (the baseline sets drop_last=True, as netspec drops the last partial batch) and the
  augmentation semantics (zero padding, random crop, flip with p = 0.5). The random streams (data
  order, crops) differ, so the accuracies differ by training noise.
* information rows (skip with --no-info): `netspec train --channels-last` (the same run with
  `channels_last: true`), and "model steps only (no data pipeline)": the seed loop's own steps
  (same model, optimizer and schedule) over batches made before timing (normalised, not augmented):
  what any loop that feeds this model in this memory format can reach at best, give or take noise.
* timing: perf_counter around each epoch's training loop (DataLoader worker start-up included,
  validation excluded). Reported per side: images/s over all training epochs of all runs (total
  images / total seconds), the median of the per-epoch images/s (robust against another process
  grabbing a core for a moment), the final validation accuracy of each run, and the wall time of a
  whole run (setup, training, validation; for netspec also its checkpoints and curves) for
  information.
* --repeats runs per side; repeat r uses seed --seed + r on every side, and the order of the sides
  rotates from repeat to repeat, so drift on the machine hits all sides alike.
* verdict per case and seed-loop row: fast enough if both ratios (of totals and of median epochs)
  are ≥ 2; accuracies equal if |netspec − seed loop| of the mean final val accuracy is at most
  2 × sqrt(2·p(1−p)/n_val): two standard deviations of the difference of two independent binomial
  proportions on the n_val validation images, p the mean of both.

Noise: with 2 threads on 2 cores, torch's OpenMP kernels stall whenever another process takes a core
(a LeNet epoch can go from 0.2 s to 10 s). The script prints the CPU that other processes used during
each run ("others", in cores; should be ≈ 0). On a shared machine use --threads 1.

Exit status is always 0: this is a benchmark, not a test. It prints whether the targets are met.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from common import cpu_seconds, machine, print_table  # benchmarks/common.py (the script's own folder is on sys.path)
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import netspec
from netspec.data import load_data
from netspec.lang.spec import load
from netspec.progress import Progress
from netspec.train.loop import Trainer
from netspec.train.setup import prepare, resolve_config

ROOT = Path(__file__).resolve().parents[1]
TARGET = 2.0
NETSPEC = "netspec train"
NETSPEC_CL = "netspec train --channels-last"
CEILING = "model steps only (no data pipeline)"
INFO_SIDES = (NETSPEC_CL, CEILING)  # shown for information; the target compares NETSPEC with the seed loop


@dataclass
class Case:
    name: str
    spec: Path
    data: str
    overrides: dict
    target: bool = True  # False: shown for its accuracy check, not counted for the target


@dataclass
class Run:
    side: str
    seed: int
    epochs: list[tuple[int, float]] = field(default_factory=list)  # (training images, seconds) per epoch
    val_acc: float = float("nan")
    wall: float = 0.0
    others: float | None = None  # cores used by other processes meanwhile
    init: dict | None = None  # initial state_dict

    @property
    def images(self) -> int:
        return sum(n for n, _ in self.epochs)

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.epochs)


# ---------------------------------------------------------------------------------------------
# Machine load


def others_cores(before, after, wall: float) -> float | None:
    if before is None or after is None or wall <= 0:
        return None
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall


# ---------------------------------------------------------------------------------------------
# netspec side


def run_netspec(case: Case, seed: int, out: Path, channels_last: bool = False) -> Run:
    run = Run(NETSPEC_CL if channels_last else NETSPEC, seed)
    t0 = time.perf_counter()
    # The body of netspec.train.loop.train(), split so that the initial weights can be read.
    overrides = {"data": case.data, "seed": seed, **case.overrides,
                 **({"channels_last": True} if channels_last else {})}
    setup = prepare(case.spec, overrides, [], out, False, None, Progress(enabled=False))
    run.init = {k: v.detach().clone() for k, v in setup.bare_model.state_dict().items()}
    try:
        Trainer(setup).run()
    finally:
        setup.release()  # the run directory's lock, as train() releases it
    run.wall = time.perf_counter() - t0
    with open(setup.run_dir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f if line.strip()]
    run.epochs = [(round(r["images_per_s"] * r["seconds"]), r["seconds"]) for r in records]
    run.val_acc = records[-1]["val_acc"]
    return run


# ---------------------------------------------------------------------------------------------
# Seed-style side: written the way seed 003 writes it (Dataset + DataLoader + transforms).


class SeedDataset(Dataset):
    """In-memory images as torchvision's MNIST / CIFAR10 datasets hold them: a uint8 array
    (N×H×W or N×H×W×C); `__getitem__` makes one PIL image and applies the transform to it."""

    def __init__(self, split, transform):
        images = split.images.numpy()
        self.data = np.ascontiguousarray(images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1))
        self.targets = split.labels.tolist()
        self.transform = transform

    def __getitem__(self, index):
        img, target = self.data[index], self.targets[index]
        img = Image.fromarray(img)  # mode "L" for H×W, "RGB" for H×W×3
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    def __len__(self):
        return len(self.data)


def seed_transforms(augment, size: int, mean, std):
    if augment.flip:  # seed 003's CIFAR-10 augmentation, in its order
        train_list = [transforms.Pad(augment.pad), transforms.RandomHorizontalFlip(), transforms.RandomCrop(size)]
    elif augment.pad:
        train_list = [transforms.RandomCrop(size, padding=augment.pad)]
    else:
        train_list = []
    train_transform = transforms.Compose([*train_list, transforms.ToTensor(), transforms.Normalize(mean, std)])
    test_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return train_transform, test_transform


def train(model, train_loader, loss_func, optimizer, scheduler):
    """Seed 003's train(): one epoch (plus model.train(), which the seed forgets after evaluate(),
    and the per-step lr schedule)."""
    model.train()
    total_loss = 0
    for i, (images, targets) in enumerate(train_loader):
        outputs = model(images)
        loss = loss_func(outputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item()
    return total_loss / len(train_loader)


def evaluate(model, val_loader):
    """Seed 003's evaluate()."""
    model.eval()
    with torch.no_grad():
        correct = 0
        total = 0
        for images, targets in val_loader:
            outputs = model(images)
            _, predicted = torch.max(outputs.data, dim=1)
            correct += (predicted == targets).sum().item()
            total += targets.size(0)
    return correct / total


def seed_setup(case: Case, seed: int, run: Run):
    """Config, model (seeded as netspec's prepare() does), data, loss, optimizer and lr schedule."""
    spec = load(case.spec)
    config = resolve_config(spec, {"data": case.data, "seed": seed, **case.overrides})
    unsupported = [name for name, value in (("optimizer", config.optimizer not in ("adam", "sgd")),
                                            ("schedule", config.schedule not in ("none", "cosine")),
                                            ("warmup_epochs", config.warmup_epochs),
                                            ("weight_decay", config.weight_decay),
                                            ("label_smoothing", config.label_smoothing),
                                            ("normalize", not config.augment.normalize)) if value]
    if unsupported:
        raise SystemExit(f"{case.name}: the DataLoader loop does not implement {', '.join(unsupported)}")
    torch.manual_seed(seed)  # as netspec's prepare(): seed, then build the model
    model = netspec.build(spec)
    run.init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = load_data(config.data, spec.input, None)
    loss_func = nn.CrossEntropyLoss()
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    nesterov=config.nesterov)
    scheduler = None
    if config.schedule == "cosine":  # per step, as netspec: lr = peak · ½(1 + cos(π · step / total steps))
        total_steps = config.epochs * (len(data.train) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0))))
    return spec, config, model, data, loss_func, optimizer, scheduler


def run_seed_loop(case: Case, seed: int, workers: int) -> Run:
    run = Run(f"DataLoader loop, {workers} workers", seed)
    t0 = time.perf_counter()
    spec, config, model, data, loss_func, optimizer, scheduler = seed_setup(case, seed, run)
    train_transform, test_transform = seed_transforms(config.augment, spec.input[-1], data.mean, data.std)
    train_dataset = SeedDataset(data.train, train_transform)
    test_dataset = SeedDataset(data.val, test_transform)
    train_loader = DataLoader(dataset=train_dataset, batch_size=config.batch_size, shuffle=True,
                              num_workers=workers, drop_last=True)
    test_loader = DataLoader(dataset=test_dataset, batch_size=config.batch_size, shuffle=False,
                             num_workers=workers)
    for epoch in range(config.epochs):
        started = time.perf_counter()
        train(model, train_loader, loss_func, optimizer, scheduler)
        run.epochs.append((len(train_loader) * config.batch_size, time.perf_counter() - started))
        run.val_acc = evaluate(model, test_loader)
    run.wall = time.perf_counter() - t0
    return run


def run_model_only(case: Case, seed: int) -> Run:
    """The bound: the same model steps over batches made (normalised, unaugmented) before timing.
    No data pipeline at all, so no loop that feeds this model (NCHW) can be much faster."""
    run = Run(CEILING, seed)
    t0 = time.perf_counter()
    _, config, model, data, loss_func, optimizer, scheduler = seed_setup(case, seed, run)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    images = (data.train.images.float() / 255 - mean) / std
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    bs = config.batch_size
    batches = [(images[i].contiguous(), data.train.labels[i])
               for i in (order[k * bs:(k + 1) * bs] for k in range(len(images) // bs))]
    model.train()
    for epoch in range(config.epochs):
        started = time.perf_counter()
        for x, y in batches:
            loss = loss_func(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss.item()
        run.epochs.append((len(batches) * bs, time.perf_counter() - started))
    run.wall = time.perf_counter() - t0
    return run


# ---------------------------------------------------------------------------------------------


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rate(images: float, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per side and case, seeds --seed, --seed+1, ... (default 2)")
    parser.add_argument("--digits-epochs", type=int, default=15,
                        help="epochs of the digits case (default 15, the spec's)")
    parser.add_argument("--cifar-epochs", type=int, default=5, help="epochs of the CIFAR-shaped case (default 5)")
    parser.add_argument("--plain-epochs", type=int, default=8,
                        help="epochs of the CIFAR-shaped case without augmentation (default 8)")
    parser.add_argument("--workers", default="0,2", help="workers of the DataLoader-loop rows (default 0,2)")
    parser.add_argument("--cases", default="digits,cifar,cifar-plain",
                        help="which cases, of digits, cifar, cifar-plain (default: all three)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-info", action="store_true",
                        help="skip the information rows (netspec --channels-last; model steps only)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    all_cases = {
        "digits": Case("digits, lenet", ROOT / "specs" / "lenet.yaml", "digits", {"epochs": args.digits_epochs}),
        "cifar": Case("CIFAR-shaped synthetic, cnn_bn", ROOT / "specs" / "cnn_bn.yaml", "synthetic",
                      {"epochs": args.cifar_epochs, "augment": {"pad": 4, "flip": True}}),
        "cifar-plain": Case("CIFAR-shaped synthetic, cnn_bn, no augmentation", ROOT / "specs" / "cnn_bn.yaml",
                            "synthetic", {"epochs": args.plain_epochs, "augment": {"pad": 0, "flip": False}},
                            target=False),
    }
    cases = [all_cases[name.strip()] for name in args.cases.split(",") if name.strip()]
    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"torch.get_num_threads() = {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for case in cases:
        config = resolve_config(load(case.spec), {"data": case.data, **case.overrides})
        print(f"{case.name}: {case.spec.relative_to(ROOT)} on {case.data}, {config.epochs} epochs, batch "
              f"{config.batch_size}, {config.optimizer} lr {config.lr:g}, schedule {config.schedule}, augment "
              f"pad {config.augment.pad} flip {config.augment.flip}; {args.repeats} runs per side "
              f"(seeds {args.seed}..{args.seed + args.repeats - 1}), DataLoader loop with {args.workers} workers")
    print(flush=True)

    t_start = time.perf_counter()
    results: dict[str, dict[str, list[Run]]] = {}
    n_val: dict[str, int] = {}
    init_ok = True
    with tempfile.TemporaryDirectory(prefix="netspec-bench-") as tmp:
        for number, case in enumerate(cases):
            n_val[case.name] = len(load_data(case.data, load(case.spec).input, None, val_only=True).val)

            def out(seed: int, r: int, cl: bool, number=number) -> Path:
                return Path(tmp) / f"case{number}-seed{seed}-run{r}{'-cl' if cl else ''}"

            sides = [(NETSPEC, lambda c, s, r: run_netspec(c, s, out(s, r, False)))]
            sides += [(f"DataLoader loop, {w} workers", lambda c, s, r, w=w: run_seed_loop(c, s, w)) for w in workers]
            if not args.no_info:
                sides += [(NETSPEC_CL, lambda c, s, r: run_netspec(c, s, out(s, r, True), channels_last=True)),
                          (CEILING, lambda c, s, r: run_model_only(c, s))]
            runs: dict[str, list[Run]] = {name: [] for name, _ in sides}
            for r in range(args.repeats):
                seed = args.seed + r
                order = sides[r % len(sides):] + sides[:r % len(sides)]
                for name, fn in order:
                    c0, w0 = cpu_seconds(), time.perf_counter()
                    run = fn(case, seed, r)
                    run.others = others_cores(c0, cpu_seconds(), time.perf_counter() - w0)
                    runs[name].append(run)
                    others = "?" if run.others is None else f"{run.others:.2f}"
                    print(f"  {case.name} | {name:<29} seed {seed}: {fmt_rate(rate(run.images, run.seconds)):>6} img/s "
                          f"(epochs: {' '.join(fmt_rate(rate(n, s)) for n, s in run.epochs)}), "
                          f"val acc {run.val_acc * 100:.2f} %, wall {run.wall:.1f} s, others {others} cores",
                          flush=True)
                inits = [runs[name][-1].init for name, _ in sides]
                ok = all(same_weights(inits[0], other) for other in inits[1:])
                init_ok &= ok
                print(f"  {case.name} | seed {seed}: initial weights identical on all sides: {ok}", flush=True)
            results[case.name] = runs

    print(f"\ntotal time {time.perf_counter() - t_start:.0f} s; load average now {os.getloadavg()[0]:.2f}\n")
    baselines = [f"DataLoader loop, {w} workers" for w in workers]
    rows, verdicts, met = [], [], []
    for case_name, runs in results.items():
        counts = next(c for c in cases if c.name == case_name).target
        total = {side: rate(sum(r.images for r in rs), sum(r.seconds for r in rs)) for side, rs in runs.items()}
        median = {side: statistics.median(rate(n, s) for r in rs for n, s in r.epochs) for side, rs in runs.items()}
        acc = {side: statistics.fmean(r.val_acc for r in rs) for side, rs in runs.items()}
        for side, side_runs in runs.items():
            others = [r.others for r in side_runs if r.others is not None]
            rows.append((case_name, side + (" (info)" if side in INFO_SIDES else ""), fmt_rate(total[side]),
                         fmt_rate(median[side]), *(f"{total[side] / total[b]:.2f}" for b in baselines),
                         "—" if side == CEILING else " / ".join(f"{r.val_acc * 100:.1f}" for r in side_runs),
                         f"{statistics.median(r.wall for r in side_runs):.1f}",
                         f"{max(others):.2f}" if others else "?"))
        chance = 1 / 10
        for b in baselines:
            ratio, ratio_median = total[NETSPEC] / total[b], median[NETSPEC] / median[b]
            p = (acc[NETSPEC] + acc[b]) / 2
            tolerance = 2 * math.sqrt(2 * p * (1 - p) / n_val[case_name])
            fast = ratio >= TARGET and ratio_median >= TARGET
            equal = abs(acc[NETSPEC] - acc[b]) <= tolerance
            near_chance = all(abs(acc[s] - chance) <= 2 * math.sqrt(chance * (1 - chance) / n_val[case_name])
                              for s in (NETSPEC, b))
            if counts:
                met.append(fast and equal)
            verdicts.append(
                ("" if counts else "(info) ") + f"{case_name} vs {b}: ratio {ratio:.2f} "
                f"(of median epochs {ratio_median:.2f}) "
                f"{'≥' if fast else '<'} {TARGET:g}: {'PASS' if fast else 'FAIL'}; mean final val acc "
                f"{acc[NETSPEC] * 100:.1f} % vs {acc[b] * 100:.1f} %, |Δ| {abs(acc[NETSPEC] - acc[b]) * 100:.1f} pp "
                f"{'≤' if equal else '>'} {tolerance * 100:.1f} pp (2σ, {n_val[case_name]} val images): "
                f"{'equal' if equal else 'NOT equal'}" + (" (both near chance: says little)" if near_chance else ""))
    print_table(("case", "side", "img/s", "median epoch img/s", *(f"÷ {b}" for b in baselines),
                 "final val acc % per run", "wall s", "others (cores, max)"), rows)
    print()
    for line in verdicts:
        print(line)
    print(f"initial weights identical on all sides: {init_ok}")
    print(f"target (≥ {TARGET:g}× at equal accuracy): met in {sum(met)} of {len(met)} comparisons "
          "(cases digits and cifar, against every DataLoader-loop row)" +
          ("; ALL TARGETS MET" if all(met) else ""))
    return 0

if __name__ == "__main__":
    sys.exit(main())
