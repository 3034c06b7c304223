"""Runs from Python and the shell: `netspec.load_run(RUN).predict(...)` answers as `netspec infer`
does on the run's exported ONNX file, and `netspec runs` tells finished, interrupted, running and
damaged runs apart from what they record."""

from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import netspec
from netspec.errors import OptionError, RunStopped
from netspec.exporters.onnx import export_onnx, load_source
from netspec.predict import BadInput
from netspec.progress import Progress
from netspec.train.checkpoint import read_metadata
from netspec.train.loop import train
from netspec.train.runlock import RunLock
from tests.conftest import SPECS

EPOCHS = 2


class StopAtEpoch(Progress):
    """Sends this process a Ctrl-C (SIGINT) when epoch `epoch` starts: training's own handler saves
    the run after the next step and stops it, as at a terminal."""

    def __init__(self, epoch: int):
        super().__init__(enabled=False)
        self.epoch = epoch

    def start_epoch(self, epoch, epochs, steps, done=0):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    train(SPECS / "lenet.yaml", {"data": "digits", "epochs": EPOCHS}, out=folder / "finished",
          progress=Progress(enabled=False))
    with pytest.raises(RunStopped):
        train(SPECS / "lenet.yaml", {"data": "digits", "epochs": EPOCHS}, out=folder / "interrupted",
              progress=StopAtEpoch(2))
    export_onnx(load_source(folder / "finished"), folder / "finished" / "lenet5.onnx")
    return folder


def digit_pngs(folder, count=60):
    """Real 8×8 digits written as grayscale PNGs (training resized the same digits to 28×28)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"digit{i:03d}.png")
        Image.fromarray(np.round(digits.images[i] * (255 / 16)).astype(np.uint8)).save(paths[-1])
    return paths, [str(t) for t in digits.target[:count]]


def assert_same(predictions, expected):
    assert len(predictions) == len(expected)
    for ours, theirs in zip(predictions, expected):
        assert (ours.index, ours.label) == (theirs["index"], theirs["label"])
        assert ours.prob == pytest.approx(theirs["prob"], abs=1e-4)
        assert [t["prob"] for t in ours.top_k] == pytest.approx([t["prob"] for t in theirs["top_k"]], abs=1e-4)


@pytest.mark.slow  # sets up the module's two digits runs and an ONNX export
def test_predict_answers_as_infer_on_the_exported_model(runs, tmp_path, cli):
    paths, truth = digit_pngs(tmp_path / "pngs")
    result = cli("infer", runs / "finished" / "lenet5.onnx", *paths, "--json")
    assert result.code == 0, result.err
    expected = json.loads(result.out)
    assert sum(p["label"] == t for p, t in zip(expected, truth)) >= 0.6 * len(truth)  # a trained model

    run = netspec.load_run(runs / "finished")
    assert_same(run.predict(paths), expected)
    assert [p.input for p in run.predict(paths)] == [str(p) for p in paths]
    arrays = [np.asarray(Image.open(p)) for p in paths]
    assert_same(run.predict(arrays), expected)  # uint8 H×W
    assert_same(run.predict([a.astype(np.float32) / 255 for a in arrays]), expected)  # float 0–1
    assert_same(run.predict(np.stack([a[None] for a in arrays])), expected)  # an N×C×H×W batch
    assert_same(run.predict([Image.open(p) for p in paths], batch_size=7), expected)  # PIL images
    assert_same(run.predict(str(tmp_path / "pngs")), expected)  # a folder, sorted as infer sorts it

    one = run.predict(paths[0], top_k=3)  # one input: one prediction, as `infer --json` writes it
    assert one.to_json().keys() == expected[0].keys() and one.input == expected[0]["input"]
    assert_same([one], [{**expected[0], "top_k": expected[0]["top_k"][:3]}])
    assert run.labels == [str(d) for d in range(10)] and run.spec.name == "lenet5"
    assert run.config["train"]["epochs"] == EPOCHS and run.card.input_shape == [1, 28, 28]


@pytest.mark.slow
def test_bad_inputs_and_weights_are_named(runs):
    run = netspec.load_run(runs / "finished")
    with pytest.raises(BadInput, match=r"<array 1>: .*shape \(5, 5, 5\)"):
        run.predict([np.zeros((8, 8), np.uint8), np.zeros((5, 5, 5), np.uint8)])
    with pytest.raises(BadInput, match=r"float arrays must hold values in \[0, 1\]"):
        run.predict(np.full((8, 8), 2.0))
    with pytest.raises(BadInput, match="no such file"):
        run.predict(runs / "missing.png")
    with pytest.raises(OptionError, match="expected one of best, last"):
        netspec.load_run(runs / "finished", weights="newest")


@pytest.mark.slow
def test_the_model_is_in_eval_mode_with_the_chosen_weights(runs):
    folder = runs / "interrupted"  # stopped one step into epoch 2: its best (epoch 1) and last weights differ
    best, last = load_file(folder / "best.safetensors"), load_file(folder / "last.safetensors")
    assert any(not torch.equal(best[k], last[k]) for k in best)
    for weights, saved in (("best", best), ("last", last)):
        run = netspec.load_run(folder, weights=weights)
        assert not any(module.training for module in run.model.modules())
        state = run.model.state_dict()
        assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    run.model.train()  # predicting still evaluates, and leaves the mode as it found it
    assert run.predict(np.zeros((8, 8), np.uint8)).label in run.labels and run.model.training


@pytest.mark.slow
def test_runs_lists_each_run_with_its_status(runs, cli):
    running = runs / "running"
    shutil.copytree(runs / "finished", running)
    (runs / "damaged").mkdir()
    (runs / "damaged" / "config.json").write_text("{not json")
    (runs / "not-a-run").mkdir()
    old = 1_600_000_000  # 2020-09-13: the damaged run is the oldest
    os.utime(runs / "damaged" / "config.json", (old, old))
    lock = RunLock.acquire(running, "--out")
    try:
        result = cli("runs", runs)
        listed = cli("runs", runs, "--json")
    finally:
        lock.release()
    assert result.code == 0 and listed.code == 0, result.err + listed.err
    by_name = {os.path.basename(r["run"]): r for r in json.loads(listed.out)}
    assert set(by_name) == {"finished", "interrupted", "running", "damaged"}
    assert [os.path.basename(r["run"]) for r in json.loads(listed.out)][0] == "damaged"
    dates = [r["date"] for r in json.loads(listed.out)]
    assert [d[:4] for d in dates][0] == "2020" and dates[1:] == sorted(dates[1:])

    def metrics(name):
        return [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]

    expected = {"finished": ("finished", EPOCHS), "interrupted": ("interrupted", 1), "running": ("running", EPOCHS)}
    for name, (status, done) in expected.items():
        record = by_name[name]
        assert (record["status"], record["epochs_done"], record["epochs_planned"]) == (status, done, EPOCHS)
        assert record["best_val_acc"] == pytest.approx(max(m["val_acc"] for m in metrics(name)))
        assert len(metrics(name)) == done and record["problems"] == []
    assert by_name["running"]["holder"]["pid"] == os.getpid()
    assert by_name["damaged"]["status"] == "damaged" and "not valid JSON" in by_name["damaged"]["problems"][0]

    lines = result.out.splitlines()
    rows = {line.split()[0].rsplit("/", 1)[-1]: line.split() for line in lines[1:] if not line.startswith(" ")}
    best = read_metadata(runs / "finished" / "best.safetensors")["val_acc"]
    assert rows["finished"][1:4] == ["finished", f"{EPOCHS}/{EPOCHS}", f"{best * 100:.2f}%"]
    assert rows["interrupted"][1:3] == ["interrupted", f"1/{EPOCHS}"] and rows["running"][1] == "running"
    damaged = next(i for i, line in enumerate(lines) if "damaged" in line.split()[:2])
    assert "config.json" in lines[damaged + 1] and "not valid JSON" in lines[damaged + 1]
    assert "Traceback" not in result.out + result.err


def test_runs_of_a_missing_folder_is_one_error(tmp_path, cli):
    result = cli("runs", tmp_path / "nowhere")
    assert result.code == 2 and "no such directory" in result.err and "Traceback" not in result.err
    assert cli("runs", tmp_path).out.startswith("no runs in")
