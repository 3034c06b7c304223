"""`--resume` is exact and says what it does (issue 9, items 5, 12 and the per-class part of 14).

Interrupts are made in-process: a wrapped `Trainer.train_step` raises SIGINT at a chosen training
step, which the trainer handles exactly like a Ctrl-C from the terminal (save, then exit 130).
"""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from safetensors.torch import load_file

import netspec.train.loop as trainer_module
from netspec.errors import RunStopped
from netspec.train.checkpoint import read_metadata
from netspec.train.config import TrainConfig
from netspec.train.loop import train
from netspec.train.schedule import learning_rate

DIGITS_STEPS = 44  # digits: 1,437 training samples // batch 32
SMALL = ("name: small\ninput: [1, 8, 8]\nvars: {hidden: 16}\n"
         "layers: [flatten, linear: $hidden, relu, linear: 10]\n"
         "train: {data: digits, batch_size: 32, epochs: 2}\n")


@pytest.fixture
def spec(tmp_path):
    """A small MLP on digits at batch 32 (LeNet would take 10x as long and show nothing more)."""
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path
TIMING = ("seconds", "images_per_s")  # the only fields of metrics.jsonl that may differ between two runs


def interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C during training step `step` (1-based, counted over this process's run)."""
    real = trainer_module.Trainer.train_step
    calls = {"n": 0}

    def train_step(self, *args):
        calls["n"] += 1
        if calls["n"] == step:
            signal.raise_signal(signal.SIGINT)
        return real(self, *args)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", train_step)


def train_interrupted(monkeypatch, step: int, *args, **kwargs):
    with monkeypatch.context() as patch:
        interrupt_at(patch, step)
        with pytest.raises(RunStopped) as stopped:
            train(*args, **kwargs)
    assert stopped.value.exit_code == 130
    return str(stopped.value)


def metrics(run_dir) -> list[dict]:
    """metrics.jsonl without its timing fields ([] when there is none yet)."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def same_weights(a, b) -> bool:
    ours, theirs = load_file(a), load_file(b)
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


# -- 12 (a): an image folder and dropout resume bit-for-bit -----------------------------------------
def image_folder(root):
    from PIL import Image

    generator = torch.Generator().manual_seed(5)
    for label, base in (("dark", 40), ("light", 160)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(20):
            pixels = (base + torch.randint(0, 60, (10, 10), generator=generator)).to(torch.uint8)
            Image.fromarray(pixels.numpy(), mode="L").save(folder / f"{i}.png")
    return root


def test_an_image_folder_with_dropout_resumes_bit_for_bit(tmp_path, monkeypatch):
    spec = tmp_path / "drop.yaml"
    spec.write_text("name: drop\ninput: [1, 8, 8]\n"
                    "layers: [flatten, linear: 32, relu, dropout: 0.5, linear: 2]\n")
    folder = image_folder(tmp_path / "images")
    settings = {"data": f"folder:{folder}", "epochs": 3, "batch_size": 4, "workers": 0, "lr": 0.01}
    reference = train(spec, settings, out=tmp_path / "reference")
    steps = len(list((tmp_path / "reference").glob("state-*")))  # one state file: prove the run happened
    assert steps == 1
    per_epoch = json.loads((reference / "config.json").read_text())["data"]["train"] // 4
    assert per_epoch >= 4
    stop = per_epoch + per_epoch // 2  # in the middle of epoch 2
    train_interrupted(monkeypatch, stop, spec, settings, out=tmp_path / "resumed")
    meta = read_metadata(tmp_path / "resumed" / "last.safetensors")
    assert (meta["epoch"], meta["step"]) == (2, per_epoch // 2)
    train(spec, settings, out=tmp_path / "resumed", resume=True)
    assert same_weights(tmp_path / "resumed" / "last.safetensors", reference / "last.safetensors")
    assert metrics(tmp_path / "resumed") == metrics(reference)


def test_creating_a_folder_batch_iterator_draws_nothing_from_the_global_generator(tmp_path):
    from netspec.data import load_data
    from netspec.data.batches import Batches

    data = load_data(f"folder:{image_folder(tmp_path / 'images')}", (1, 8, 8), None)
    batches = Batches(data, "train", 4, torch.device("cpu"))
    before = torch.get_rng_state()
    next(iter(batches.epoch(2, 0, start_step=1)))
    assert torch.equal(torch.get_rng_state(), before)


# -- 12 (b): Ctrl-C on the last step of an epoch ---------------------------------------------------------
def test_ctrl_c_on_the_last_step_of_an_epoch_still_validates_that_epoch(tmp_path, monkeypatch, spec):
    settings = {"data": "digits", "epochs": 2}
    reference = train(spec, settings, out=tmp_path / "reference")
    train_interrupted(monkeypatch, DIGITS_STEPS, spec, settings, out=tmp_path / "run")
    meta = read_metadata(tmp_path / "run" / "last.safetensors")
    assert (meta["epoch"], meta["step"], meta["complete"]) == (1, DIGITS_STEPS, False)
    assert not metrics(tmp_path / "run")
    train(spec, {}, out=tmp_path / "run", resume=True)
    assert metrics(tmp_path / "run") == metrics(reference)  # epoch 1 validated, with the same figures
    assert same_weights(tmp_path / "run" / "best.safetensors", reference / "best.safetensors")
    assert read_metadata(tmp_path / "run" / "best.safetensors")["epoch"] == \
        read_metadata(reference / "best.safetensors")["epoch"]


# -- 12 (c) and 14: the end-of-run outputs ---------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """3 epochs of SGD at a rate so high that the best epoch (the first) is not the last."""
    folder = tmp_path_factory.mktemp("finished")
    (folder / "small.yaml").write_text(SMALL)
    out = folder / "run"
    train(folder / "small.yaml", {"epochs": 3, "optimizer": "sgd", "lr": 0.5, "seed": 0, "schedule": "none"}, out=out)
    return out


def test_the_per_class_table_is_for_the_best_weights_and_says_so(finished, cli, capsys):
    records = metrics(finished)
    best_epoch = max(records, key=lambda r: r["val_acc"])["epoch"]
    assert best_epoch != records[-1]["epoch"], "precondition: best and last weights differ"
    per_class = json.loads((finished / "per_class.json").read_text())
    assert per_class["weights"] == "best" and per_class["epoch"] == best_epoch
    assert per_class["val_acc"] == pytest.approx(max(r["val_acc"] for r in records), abs=1e-12)
    evaluated = cli("eval", finished)  # eval's default weights: the same numbers
    assert evaluated.code == 0, evaluated.err
    eval_record = json.loads((finished / "eval.json").read_text())
    assert eval_record["accuracy"] == pytest.approx(per_class["val_acc"], abs=1e-12)
    assert eval_record["confusion"] == per_class["confusion"]


def test_the_printed_table_names_its_weights(tmp_path, capsys, spec):
    train(spec, {"data": "digits", "epochs": 1}, out=tmp_path / "run")
    out = capsys.readouterr().out
    assert "per-class validation accuracy (best weights, epoch 1" in out


def test_resume_writes_the_end_of_run_outputs_a_ctrl_c_left_out(finished, tmp_path, capsys, spec):
    import shutil

    run = shutil.copytree(finished, tmp_path / "run")
    (run / "per_class.json").unlink()  # what a Ctrl-C right after the last epoch's checkpoint leaves
    capsys.readouterr()
    train(spec, {}, out=run, resume=True)
    out = capsys.readouterr().out
    assert "already finished" in out and "per_class.json" in out
    assert json.loads((run / "per_class.json").read_text()) == json.loads((finished / "per_class.json").read_text())
    assert metrics(run) == metrics(finished)  # nothing was trained again


# -- 5: changed flags on resume ------------------------------------------------------------------------------
def test_changed_epochs_are_printed_written_and_kept(tmp_path, monkeypatch, capsys, spec):
    settings = {"data": "digits", "epochs": 4, "schedule": "cosine", "lr": 0.002}
    train_interrupted(monkeypatch, DIGITS_STEPS + 10, spec, settings, out=tmp_path / "run")
    capsys.readouterr()
    train(spec, {"epochs": 3}, out=tmp_path / "run", resume=True)
    out = capsys.readouterr().out
    assert "epochs 4 → 3" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["epochs"] == 3
    history = [json.loads(line) for line in (tmp_path / "run" / "resumes.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["changes"] == {"epochs": {"from": 4, "to": 3}}
    assert (history[0]["epoch"], history[0]["step"]) == (2, 10) and history[0]["time"]
    # the jump is stated with both rates, each what the schedule gives for the next step
    step = DIGITS_STEPS + 10
    old = learning_rate(TrainConfig(epochs=4, schedule="cosine", lr=0.002), step, DIGITS_STEPS)
    new = learning_rate(TrainConfig(epochs=3, schedule="cosine", lr=0.002), step, DIGITS_STEPS)
    assert history[0]["lr"] == {"from": old, "to": new}
    assert f"learning rate at step {step + 1}: {old:.4g} → {new:.4g}" in out
    assert [r["epoch"] for r in metrics(tmp_path / "run")] == [1, 2, 3]


def test_extending_a_finished_cosine_run_states_the_jump(tmp_path, capsys, spec):
    settings = {"data": "digits", "epochs": 1, "schedule": "cosine", "lr": 0.002}
    run = train(spec, settings, out=tmp_path / "run")
    last_lr = metrics(run)[-1]["lr"]
    capsys.readouterr()
    train(spec, {"epochs": 2}, out=run, resume=True)
    out = capsys.readouterr().out
    new = learning_rate(TrainConfig(epochs=2, schedule="cosine", lr=0.002), DIGITS_STEPS, DIGITS_STEPS)
    assert math.isclose(new, 0.001, rel_tol=1e-9)  # half-way down a 2-epoch cosine: half the peak
    assert "epochs 1 → 2" in out and f"{last_lr:.4g} → {new:.4g}" in out and "re-planned" in out
    assert metrics(run)[-1]["lr"] == learning_rate(TrainConfig(epochs=2, schedule="cosine", lr=0.002),
                                                   2 * DIGITS_STEPS - 1, DIGITS_STEPS)


def test_extending_a_constant_schedule_has_no_jump_to_state(tmp_path, capsys, spec):
    run = train(spec, {"data": "digits", "epochs": 1, "schedule": "none"}, out=tmp_path / "run")
    capsys.readouterr()
    train(spec, {"epochs": 2}, out=run, resume=True)
    out = capsys.readouterr().out
    assert "epochs 1 → 2" in out and "learning rate at step" not in out
    assert "lr" not in json.loads((run / "resumes.jsonl").read_text())


@pytest.mark.parametrize("flags, setting", [
    (["--batch-size", "16"], "batch_size"),
    (["--seed", "3"], "seed"),
    (["--lr", "0.1"], "lr"),
    (["--optimizer", "sgd"], "optimizer"),
    (["--pad", "1"], "augment"),
    (["--data", "synthetic"], "data"),
    (["--set", "hidden=8"], "--set"),
])
def test_settings_that_change_the_training_are_refused_on_resume(tmp_path, spec, cli, flags, setting):
    run = tmp_path / "run"
    assert cli("train", spec, "--data", "digits", "--epochs", "1", "--out", run).code == 0
    before = (run / "config.json").read_text()
    result = cli("train", spec, "--resume", "--out", run, "--epochs", "2", *flags)
    assert result.code == 2, result.err
    assert setting in result.err and "--init-from" in result.err and "Traceback" not in result.err
    assert (run / "config.json").read_text() == before and not (run / "resumes.jsonl").exists()
    assert len(metrics(run)) == 1


def test_a_setting_given_as_it_was_is_no_change(tmp_path, spec, cli):
    run = tmp_path / "run"
    assert cli("train", spec, "--data", "digits", "--epochs", "1", "--batch-size", "64", "--out", run).code == 0
    result = cli("train", spec, "--resume", "--out", run, "--epochs", "2", "--data", "digits", "--batch-size", "64")
    assert result.code == 0, result.err
    history = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert history[0]["changes"] == {"epochs": {"from": 1, "to": 2}}


def test_shortening_below_the_epochs_done_is_refused(tmp_path, cli, spec):
    run = tmp_path / "run"
    assert cli("train", spec, "--data", "digits", "--epochs", "2", "--out", run).code == 0
    result = cli("train", spec, "--resume", "--out", run, "--epochs", "1")
    assert result.code == 2 and "--epochs" in result.err and "2 epochs" in result.err, result.err
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_execution_settings_may_change_on_resume(tmp_path, cli, spec):
    run = tmp_path / "run"
    assert cli("train", spec, "--data", "digits", "--epochs", "1", "--out", run).code == 0
    result = cli("train", spec, "--resume", "--out", run, "--epochs", "2", "--checkpoint-every", "40")
    assert result.code == 0, result.err
    assert "checkpoint_every 0 → 40" in result.out
    assert json.loads((run / "config.json").read_text())["train"]["checkpoint_every"] == 40


def test_init_from_with_resume_is_refused(tmp_path, cli, spec):
    result = cli("train", spec, "--resume", "--out", tmp_path / "run", "--init-from", tmp_path / "other")
    assert result.code == 2 and "--init-from starts a new run" in result.err


# -- 5: `--resume` without --out ---------------------------------------------------------------------------
def test_resume_alone_picks_the_most_recent_unfinished_run(tmp_path, monkeypatch, cli, spec):
    monkeypatch.chdir(tmp_path)  # runs/ is relative to the working directory
    settings = {"data": "digits", "epochs": 2}
    train_interrupted(monkeypatch, 10, spec, settings)            # runs/small-1, stopped in epoch 1
    train_interrupted(monkeypatch, 20, spec, settings)            # runs/small-2, stopped later
    train_interrupted(monkeypatch, 5, spec, {}, resume=True)      # resumes small-2 (the newest), stops again
    runs = tmp_path / "runs"
    assert read_metadata(runs / "small-2" / "last.safetensors")["step"] == 25
    train_interrupted(monkeypatch, 5, spec, {}, out=runs / "small-1", resume=True)  # now small-1 is newest
    train(spec, {"data": "digits", "epochs": 1})                  # runs/small-3, finished: never picked
    result = cli("train", spec, "--resume")
    assert result.code == 0, result.err
    assert "resuming runs/small-1 " in result.out
    assert len(metrics(runs / "small-1")) == 2 and not metrics(runs / "small-2")
    result = cli("train", spec, "--resume")  # then small-2
    assert result.code == 0 and "resuming runs/small-2 " in result.out
    result = cli("train", spec, "--resume")
    assert result.code == 2 and "no unfinished run of `small`" in result.err and "--out" in result.err
