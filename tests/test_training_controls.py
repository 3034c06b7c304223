"""Training controls (issue 13, point 3): TensorBoard event files, metrics.csv, early stopping
(--patience, resumable), gradient clipping (--clip-grad) and top-5 accuracy."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from netspec.progress import Progress
from netspec.train.checkpoint import load_state, read_metadata
from netspec.train.loop import Trainer, train
from netspec.train.setup import prepare

TINY = "name: tiny\ninput: [1, 28, 28]\nlayers: [flatten, linear: 10]\n"  # digits: 10 classes
FROZEN = 1e-12  # Adam moves every weight by ~lr per step: far below float32's resolution, so nothing changes


def spec_file(directory: Path, text: str = TINY) -> Path:
    path = directory / "net.yaml"
    path.write_text(text)
    return path


def run_quietly(spec: Path, settings: dict, out: Path, resume: bool = False) -> str:
    """Train; return what it printed."""
    stream = io.StringIO()
    train(spec, settings, out=out, resume=resume, progress=Progress(stream=stream))
    return stream.getvalue()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("controls")
    out = base / "run"
    run_quietly(spec_file(base), {"data": "digits", "epochs": 3, "batch_size": 128, "lr": 0.01,
                                  "tensorboard": True, "log_every": 2}, out)
    return out


def test_tensorboard_reads_one_scalar_per_epoch_and_the_step_losses(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logged_run / "tensorboard"))
    events.Reload()
    records = jsonl(logged_run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for tag, key in {"train/loss": "train_loss", "val/loss": "val_loss", "val/accuracy": "val_acc",
                     "val/top5": "val_top5", "lr": "lr", "epoch": "epoch"}.items():
        values = [e.value for e in events.Scalars(tag)]
        assert values == pytest.approx([r[key] for r in records], rel=1e-6), tag
    steps = events.Scalars("train/loss_step")
    per_epoch = load_state(logged_run / read_metadata(logged_run / "last.safetensors")["state"])[2]["steps_per_epoch"]
    assert per_epoch == 1437 // 128  # digits' training split at batch 128, the last partial batch dropped
    assert [e.step for e in steps] == list(range(2, 3 * per_epoch + 1, 2))
    assert [e.step for e in events.Scalars("val/loss")] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert all(0 < e.value < 10 for e in steps)


def test_metrics_csv_holds_the_rows_of_metrics_jsonl(logged_run):
    records = jsonl(logged_run / "metrics.jsonl")
    with open(logged_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) == 3
    for row, record in zip(rows, records):
        assert set(row) == set(record)
        assert {k: float(v) for k, v in row.items()} == {k: float(v) for k, v in record.items()}


def test_top5_is_reported_with_ten_classes_and_not_with_three(logged_run, tmp_path):
    records = jsonl(logged_run / "metrics.jsonl")
    assert all(r["val_acc"] <= r["val_top5"] <= 1 for r in records)
    assert records[-1]["val_top5"] > 0.5  # trained: far above chance (0.5 for 5 of 10)
    from PIL import Image

    for k, label in enumerate(("a", "b", "c")):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(8):
            Image.new("L", (8, 8), 30 + 90 * k + i).save(tmp_path / "images" / label / f"{i}.png")
    spec = spec_file(tmp_path, "name: tri\ninput: [1, 8, 8]\nlayers: [flatten, linear: 3]\n")
    printed = run_quietly(spec, {"data": f"folder:{tmp_path / 'images'}", "epochs": 1, "batch_size": 4}, tmp_path / "r")
    assert "val_top5" not in jsonl(tmp_path / "r" / "metrics.jsonl")[0]
    assert "top-5" not in printed and "val_top5" not in (tmp_path / "r" / "metrics.csv").read_text()


def test_patience_stops_a_run_that_cannot_improve_after_n_plus_one_epochs(tmp_path):
    settings = {"data": "digits", "epochs": 8, "batch_size": 128, "lr": FROZEN, "patience": 2}
    printed = run_quietly(spec_file(tmp_path), settings, tmp_path / "run")
    assert [r["epoch"] for r in jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3]
    assert printed.strip().splitlines()[-1].endswith(
        "stopped early after epoch 3: no better validation accuracy for 2 epochs "
        f"(best {jsonl(tmp_path / 'run' / 'metrics.jsonl')[0]['val_acc'] * 100:.2f}% at epoch 1; --patience 2)")
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + 3


def test_a_resumed_run_continues_the_patience_count(tmp_path):
    spec, out = spec_file(tmp_path), tmp_path / "run"
    settings = {"data": "digits", "batch_size": 128, "lr": FROZEN, "patience": 3}
    run_quietly(spec, {**settings, "epochs": 2}, out)  # its last epoch: no early stop, 1 epoch since the best
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["patience"] == 3
    counters = load_state(out / read_metadata(out / "last.safetensors")["state"])[2]
    assert (counters["epoch"], counters["best_epoch"]) == (2, 1)
    printed = run_quietly(spec, {"epochs": 10}, out, resume=True)
    # best epoch 1 + patience 3: the count goes on from the first run (restarted, it would stop after 5)
    assert [r["epoch"] for r in jsonl(out / "metrics.jsonl")] == [1, 2, 3, 4]
    assert "stopped early after epoch 4" in printed.strip().splitlines()[-1]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("epoch,") and rows.count(rows[0]) == 1
    again = run_quietly(spec, {"epochs": 10}, out, resume=True)
    assert "already stopped early after epoch 4" in again and "give a larger --patience" in again
    assert len(jsonl(out / "metrics.jsonl")) == 4


def test_resuming_a_run_that_stopped_early_with_new_settings_rewrites_nothing(tmp_path):
    """Nothing trains, so config.json keeps the plan the run had and resumes.jsonl records no change."""
    spec, out = spec_file(tmp_path), tmp_path / "run"
    run_quietly(spec, {"data": "digits", "epochs": 8, "batch_size": 128, "lr": FROZEN, "patience": 2}, out)
    config = (out / "config.json").read_bytes()
    assert json.loads(config)["train"]["epochs"] == 8 and len(jsonl(out / "metrics.jsonl")) == 3
    again = run_quietly(spec, {"epochs": 20}, out, resume=True)
    assert "already stopped early after epoch 3" in again and "changed on resume" not in again
    assert f"resuming {out} from" not in again
    assert (out / "config.json").read_bytes() == config and not (out / "resumes.jsonl").exists()
    assert len(jsonl(out / "metrics.jsonl")) == 3
    trained = run_quietly(spec, {"epochs": 20, "patience": 0}, out, resume=True)  # a larger patience trains on
    assert "changed on resume" in trained and json.loads((out / "config.json").read_text())["train"]["epochs"] == 20
    assert len(jsonl(out / "resumes.jsonl")) == 1 and len(jsonl(out / "metrics.jsonl")) == 20


def gradient_norms(tmp_path: Path, clip: float | None) -> list[float]:
    """The total gradient norm each optimiser step of a short run sees."""
    settings = {"data": "digits", "epochs": 1, "batch_size": 128, "lr": 0.01,
                **({} if clip is None else {"clip_grad": clip})}
    setup = prepare(spec_file(tmp_path), settings, [], tmp_path / f"run-{clip}", False, None, Progress(enabled=False))
    norms = []

    def before_step(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    try:
        trainer = Trainer(setup)
        trainer.optimizer.register_step_pre_hook(before_step)
        trainer.run()
    finally:
        setup.release()
    return norms


def test_clip_grad_bounds_the_gradient_norm_of_every_step(tmp_path):
    limit = 0.05
    unclipped = gradient_norms(tmp_path, None)
    clipped = gradient_norms(tmp_path, limit)
    assert len(clipped) == len(unclipped) > 5
    assert min(unclipped) > limit  # the limit binds on every step
    assert max(clipped) <= limit * (1 + 1e-5)
    assert min(clipped) > limit * 0.99  # clipped to the limit, not zeroed


def loss_scaled_run(spec: Path, out: Path, epochs: int, resume: bool = False) -> dict:
    """A run whose steps go through a GradScaler, as `--amp fp16` does on CUDA (here the CPU
    scaler on float32, growing ×2 every 2 steps); returns the scaler's state at the end."""
    settings = {"epochs": epochs} if resume else {"data": "digits", "epochs": epochs, "batch_size": 128}
    setup = prepare(spec, settings, [], out, resume, None, Progress(enabled=False))
    try:
        trainer = Trainer(setup)
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=2)
        trainer.run()
    finally:
        setup.release()
    return trainer.scaler.state_dict()


def test_a_resumed_fp16_run_keeps_its_loss_scale(tmp_path):
    """The loss scale travels in the checkpoint: resumed, it goes on as if never interrupted
    (restarted, it would begin again at its initial scale)."""
    spec = spec_file(tmp_path)
    straight = loss_scaled_run(spec, tmp_path / "straight", epochs=2)
    first = loss_scaled_run(spec, tmp_path / "run", epochs=1)
    counters = load_state(tmp_path / "run" / read_metadata(tmp_path / "run" / "last.safetensors")["state"])[2]
    assert counters["grad_scaler"] == {"scale": first["scale"], "growth_tracker": first["_growth_tracker"]}
    assert first["scale"] > 2.0**8  # it grew during the first epoch
    resumed = loss_scaled_run(spec, tmp_path / "run", epochs=2, resume=True)
    assert (resumed["scale"], resumed["_growth_tracker"]) == (straight["scale"], straight["_growth_tracker"])


@pytest.mark.parametrize("record", [{"scale": -1.0, "growth_tracker": 0}, {"scale": float("nan"), "growth_tracker": 0},
                                    {"scale": 1.0, "growth_tracker": -3}, {"scale": 1.0}, [1, 2]])
def test_a_damaged_loss_scale_record_is_refused(record, tmp_path):
    from netspec.errors import NetspecError
    from netspec.train.checkpoint import check_counters

    counters = {"epoch": 1, "step": 3, "global_step": 3, "best_val_acc": 0.0, "steps_per_epoch": 12,
                "totals": {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}, "grad_scaler": record}
    with pytest.raises(NetspecError) as info:
        check_counters(counters, tmp_path / "state.safetensors")
    assert "grad_scaler" in str(info.value.format())


def test_a_lower_patience_on_a_mid_epoch_resume_finishes_that_epoch_first(tmp_path, monkeypatch):
    """Interrupted inside epoch 3, resumed with --patience 1: epoch 3 is completed (validated and
    recorded), then the run stops — it does not stop at once with epoch 3 half trained."""
    import signal

    from netspec.errors import RunStopped

    spec, out = spec_file(tmp_path), tmp_path / "run"
    steps = {"n": 0}
    real = Trainer.train_step

    def train_step(self, *args):
        steps["n"] += 1
        if steps["n"] == 2 * 12 + 5:  # 12 steps an epoch (1,437 training images at batch 128)
            signal.raise_signal(signal.SIGINT)
        return real(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", train_step)
        with pytest.raises(RunStopped):
            run_quietly(spec, {"data": "digits", "epochs": 8, "batch_size": 128, "lr": FROZEN, "patience": 3}, out)
    assert [r["epoch"] for r in jsonl(out / "metrics.jsonl")] == [1, 2]
    printed = run_quietly(spec, {"patience": 1}, out, resume=True)
    assert [r["epoch"] for r in jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    assert "stopped early after epoch 3" in printed.strip().splitlines()[-1]
    assert read_metadata(out / "last.safetensors")["complete"] is True
