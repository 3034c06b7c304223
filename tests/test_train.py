"""`netspec train` / `netspec eval` end to end on the bundled digits set (no download)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import netspec.train.loop as trainer_module
from netspec.errors import RunStopped
from netspec.train.checkpoint import read_metadata
from netspec.train.loop import train
from tests.conftest import SPECS

LENET = SPECS / "lenet.yaml"


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """One short LeNet run on digits, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    train(LENET, {"data": "digits", "epochs": 5}, out=out)
    return out


def test_lenet_on_digits_learns(lenet_run):
    records = [json.loads(line) for line in (lenet_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"}
    assert max(r["val_acc"] for r in records) >= 0.95
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert all(0 <= r["val_acc"] <= 1 and r["images_per_s"] > 0 for r in records)


def test_run_directory_holds_everything(lenet_run):
    names = {p.name for p in lenet_run.iterdir()}
    assert {"spec.yaml", "config.json", "metrics.jsonl", "curves.png", "last.safetensors", "best.safetensors",
            "per_class.json"} <= names
    assert len([n for n in names if n.startswith("state-")]) == 1
    assert (lenet_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((lenet_run / "config.json").read_text())
    assert config["train"]["epochs"] == 5 and config["data"]["classes"] == [str(d) for d in range(10)]
    per_class = json.loads((lenet_run / "per_class.json").read_text())
    assert set(per_class["per_class"]) == set(config["data"]["classes"])
    meta = read_metadata(lenet_run / "best.safetensors")
    assert meta["labels"] == config["data"]["classes"] and len(meta["mean"]) == 1


def test_eval_reproduces_the_best_validation_accuracy(lenet_run, cli):
    result = cli("eval", lenet_run)
    assert result.code == 0, result.err
    record = json.loads((lenet_run / "eval.json").read_text())
    best = max(json.loads(line)["val_acc"] for line in (lenet_run / "metrics.jsonl").read_text().splitlines())
    assert record["accuracy"] == pytest.approx(best, abs=1e-9)
    assert "true \\ predicted" in result.out and (lenet_run / "confusion.png").exists()
    assert sum(map(sum, record["confusion"])) == 360


def test_init_from_reports_what_it_skipped(lenet_run, tmp_path, capsys):
    spec = tmp_path / "wide.yaml"
    spec.write_text(LENET.read_text().replace("linear: 84", "linear: 100"))
    train(spec, {"data": "digits", "epochs": 1}, out=tmp_path / "run", init_from=lenet_run)
    out = capsys.readouterr().out
    assert "init from" in out and "skipped 3 with another shape" in out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = trainer_module.F.cross_entropy

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * math.nan if calls["n"] == 60 else loss  # step 16 of epoch 2

    monkeypatch.setattr(trainer_module.F, "cross_entropy", poisoned)
    with pytest.raises(RunStopped) as info:
        train(LENET, {"data": "digits", "epochs": 3}, out=tmp_path / "run")
    assert info.value.exit_code == 3
    assert "training diverged: loss is nan at epoch 2" in str(info.value)
    assert "last good checkpoint" in str(info.value)
    meta = read_metadata(tmp_path / "run" / "last.safetensors")
    assert meta["epoch"] == 1 and meta["complete"]
    weights = load_file(tmp_path / "run" / "last.safetensors")
    assert all(torch.isfinite(w.float()).all() for w in weights.values())


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adm"], "--optimizer: input should be 'sgd', 'adam' or 'adamw'"),
    (["--data", "minst"], "unknown dataset `minst`"),
    (["--amp", "fp16", "--device", "cpu"], "fp16 mixed precision needs CUDA"),
    (["--epochs", "0"], "--epochs: input should be greater than 0"),
    (["--batch-size", "5000"], "batch size 5000 is larger than the 1437 training samples"),
])
def test_bad_training_options_are_one_line_errors(cli, tmp_path, args, message):
    result = cli("train", LENET, "--data", "digits", "--out", tmp_path / "run", *args)
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err


def test_a_spec_with_too_few_outputs_is_rejected(cli, tmp_path):
    spec = tmp_path / "five.yaml"
    spec.write_text(LENET.read_text().replace("linear: 10", "linear: 5"))
    result = cli("train", spec, "--data", "digits", "--out", tmp_path / "run")
    assert result.code == 2
    assert "outputs 5 scores but digits has 10 classes" in result.err


def test_no_dataset_given(cli, tmp_path):
    spec = tmp_path / "nodata.yaml"
    spec.write_text("name: n\ninput: [1, 8, 8]\nlayers: [flatten, linear: 10]\n")
    result = cli("train", spec, "--out", tmp_path / "run")
    assert result.code == 2 and "no dataset: give --data" in result.err


def test_trains_from_an_image_folder_with_workers(tmp_path, capsys):
    from PIL import Image

    for label, value in (("dark", 30), ("light", 220)):
        folder = tmp_path / "images" / label
        folder.mkdir(parents=True)
        for i in range(12):
            Image.new("L", (10, 10), value + i).save(folder / f"{i}.png")
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ninput: [1, 8, 8]\nlayers: [flatten, linear: 2]\n")
    train(spec, {"data": f"folder:{tmp_path / 'images'}", "epochs": 3, "batch_size": 4, "workers": 2,
                 "lr": 0.05}, out=tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_acc"] == 1.0


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    run_dir = train(LENET, {"data": "digits", "epochs": 1, "amp": "bf16", "channels_last": True}, out=tmp_path / "r")
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert record["val_acc"] > 0.5
    assert all(torch.isfinite(w.float()).all() for w in load_file(run_dir / "last.safetensors").values())


def test_schedules_are_pure_functions_of_the_step():
    from netspec.train.config import TrainConfig
    from netspec.train.schedule import learning_rate

    cosine = TrainConfig(epochs=10, lr=0.1, schedule="cosine", warmup_epochs=1)
    assert learning_rate(cosine, 0, 100) == pytest.approx(0.001)  # warm-up starts near 0
    assert learning_rate(cosine, 99, 100) == pytest.approx(0.1)
    assert learning_rate(cosine, 999, 100) < 1e-4
    step = TrainConfig(epochs=90, lr=0.1, schedule="step", step_size=30, gamma=0.1)
    assert [learning_rate(step, e * 100, 100) for e in (0, 30, 60)] == pytest.approx([0.1, 0.01, 0.001])
    onecycle = TrainConfig(epochs=10, lr=0.1, schedule="onecycle")
    peak = max(learning_rate(onecycle, s, 100) for s in range(1000))
    assert peak == pytest.approx(0.1, rel=0.01) and learning_rate(onecycle, 0, 100) == pytest.approx(0.004)


def test_batch_augmentation_crops_and_flips_exactly_like_slicing():
    from netspec.data.batches import augment_batch
    from netspec.train.config import Augment

    images = torch.randint(0, 256, (64, 3, 12, 10), dtype=torch.uint8)
    out = augment_batch(images, Augment(pad=3, flip=True), torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)  # the same draws, in the same order
    offsets = torch.randint(0, 7, (64, 2), generator=generator)
    flips = torch.rand(64, generator=generator) < 0.5
    padded = torch.nn.functional.pad(images, (3, 3, 3, 3))
    for i in range(64):
        dy, dx = offsets[i].tolist()
        expected = padded[i, :, dy:dy + 12, dx:dx + 10]
        assert torch.equal(out[i], expected.flip(2) if flips[i] else expected)


def test_validation_uses_the_runs_normalisation(tmp_path, cli):
    """With --no-normalize, validation during training and `netspec eval` agree."""
    run_dir = train(LENET, {"data": "digits", "epochs": 2, "augment": {"normalize": False}}, out=tmp_path / "raw")
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    result = cli("eval", run_dir, "--weights", "last")
    assert result.code == 0, result.err
    assert json.loads((run_dir / "eval.json").read_text())["accuracy"] == pytest.approx(last["val_acc"], abs=1e-9)


def test_eval_reads_datasets_from_the_default_root(lenet_run, monkeypatch):
    import netspec.data as data_module
    import netspec.train.evaluate as evaluate_module

    seen = {}
    real = data_module.load_data

    def spy(source, shape, root=None, val_only=False):
        seen.update(root=root, val_only=val_only)
        return real(source, shape, root, val_only)

    monkeypatch.setattr(data_module, "load_data", spy)
    evaluate_module.evaluate_run(lenet_run)
    assert seen == {"root": None, "val_only": True}  # None = ~/.cache/netspec, never the cwd


def test_resume_continues_the_spec_as_trained(tmp_path, capsys):
    spec = tmp_path / "net.yaml"
    spec.write_text(LENET.read_text())
    run_dir = train(spec, {"data": "digits", "epochs": 1}, out=tmp_path / "run")
    spec.write_text(LENET.read_text().replace("linear: 120", "linear: 100"))  # edited afterwards
    train(spec, {"epochs": 2}, out=run_dir, resume=True)
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2
    assert load_file(run_dir / "last.safetensors")["linear7.weight"].shape == (120, 400)


def test_augment_flag_errors_name_the_flag(cli, tmp_path):
    result = cli("train", LENET, "--data", "digits", "--pad", "-1", "--out", tmp_path / "run")
    assert result.code == 2 and "--pad: input should be greater than or equal to 0" in result.err


def test_extra_outputs_never_count_as_the_last_class():
    from netspec.data import Data, Split
    from netspec.data.batches import Batches
    from netspec.train.metrics import validate

    class TwelveOutputs(torch.nn.Module):
        def forward(self, x):  # always predicts output 11, which is not one of the 10 classes
            scores = torch.zeros(len(x), 12)
            scores[:, 11] = 5.0
            scores[:, 3] = 1.0
            return scores

    labels = torch.full((8,), 9)
    data = Data("t", None, Split(torch.zeros(8, 1, 2, 2, dtype=torch.uint8), labels), [str(i) for i in range(10)],
                (0.5,), (0.5,))
    _, confusion = validate(TwelveOutputs(), Batches(data, "val", 4, torch.device("cpu")), 10)
    assert confusion[9, 3] == 8 and confusion[9, 9] == 0
