"""Outputs ↔ classes (issue 9, item 4) and the two eval/validation items it touches (6, 11).

Output i of a model is class i of the data it trains on; every count mismatch is refused with
exit 2 and a hint (both directions), a spec's `labels:` must be the data's class names in the
data's order, and the labels in the checkpoints, config.json, per_class.json and the exported
ONNX file are the ones training used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netspec.train.checkpoint import read_metadata
from netspec.train.loop import train

FOLDER_CLASSES = ("dark", "light", "mid")  # sorted: the order an image folder's classes take


def image_folder(root: Path, classes=FOLDER_CLASSES, per_class: int = 8) -> Path:
    """A tiny grayscale image folder: one subfolder per class, each class its own brightness."""
    from PIL import Image

    for k, label in enumerate(classes):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (10, 10), 30 + 90 * k + i).save(folder / f"{i}.png")
    return root


def spec_file(tmp_path: Path, text: str, name: str = "net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run on a 3-class folder whose spec's `labels:` are the folder's names: (run, images, spec)."""
    base = tmp_path_factory.mktemp("classes")
    images = image_folder(base / "images")
    spec = spec_file(base, 'name: tri\ninput: [1, 8, 8]\nlabels: ["dark", "light", "mid"]\n'
                           "layers: [flatten, linear: 3]\n")
    run = train(spec, {"data": f"folder:{images}", "epochs": 2, "batch_size": 4, "lr": 0.05}, out=base / "run")
    return run, images, spec


# -- the count: refused in both directions, before a run directory exists ----------------------

def test_more_outputs_than_classes_is_refused_with_the_var_to_set(cli, tmp_path):
    """The issue's case: a 10-output model on a 3-class folder used to train without a word."""
    images = image_folder(tmp_path / "images")
    spec = spec_file(tmp_path, "name: ten\ninput: [1, 8, 8]\nvars: {width: 16, classes: 10}\n"
                               "layers: [flatten, linear: $width, relu, linear: $classes]\n")
    result = cli("train", spec, "--data", f"folder:{images}", "--epochs", "1", "--out", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err
    assert f"ten outputs 10 scores but folder:{images} has 3 classes (more outputs than classes" in result.err
    assert "hint: give --set classes=3" in result.err
    assert not (tmp_path / "run").exists()
    # the hint is true: following it trains
    followed = cli("train", spec, "--data", f"folder:{images}", "--epochs", "1", "--batch-size", "4",
                   "--set", "classes=3", "--out", tmp_path / "run")
    assert followed.code == 0, followed.err
    assert read_metadata(tmp_path / "run" / "last.safetensors")["labels"] == list(FOLDER_CLASSES)


def test_the_set_hint_only_names_a_var_that_gives_the_classes(cli, tmp_path):
    """A var that equals the score count but does not set it (here it is doubled) is not suggested."""
    images = image_folder(tmp_path / "images")
    text = "name: twice\ninput: [1, 8, 8]\nvars: {half: 5}\nlayers: [flatten, linear: '${half * 2}']\n"
    spec_file(tmp_path, text)  # run from its folder, so that messages name it `net.yaml`
    result = cli("train", "net.yaml", "--data", f"folder:{images}", "--out", tmp_path / "run", cwd=tmp_path)
    assert result.code == 2
    assert "--set" not in result.err
    assert f"hint: make the last linear layer (at net.yaml:{line_of(text, 'linear')}:" in result.err


def test_fewer_outputs_than_classes_is_refused_pointing_at_the_last_linear(cli, tmp_path):
    images = image_folder(tmp_path / "images")
    text = "name: two\ninput: [1, 8, 8]\nlayers:\n  - flatten\n  - linear: 16\n  - relu\n  - linear: 2\n"
    spec_file(tmp_path, text)  # run from its folder, so that messages name it `net.yaml`
    result = cli("train", "net.yaml", "--data", f"folder:{images}", "--out", tmp_path / "run", cwd=tmp_path)
    assert result.code == 2 and "Traceback" not in result.err
    assert f"two outputs 2 scores but folder:{images} has 3 classes (fewer outputs than classes" in result.err
    assert f"hint: make the last linear layer (at net.yaml:{line_of(text, 'linear: 2')}:" in result.err
    assert "`linear: 3`" in result.err and not (tmp_path / "run").exists()


# -- the spec's labels against the data's class names ---------------------------------------------

@pytest.mark.parametrize("labels, detail", [
    ('["light", "dark", "mid"]',
     '(the same names in another order): output 0 is trained as "dark", the spec says "light"'),
    ('["cat", "dog", "emu"]', 'output 0 is trained as "dark", the spec says "cat"'),
    ('["dark", "light"]', "the spec names 2 classes"),
])
def test_spec_labels_that_are_not_the_datas_classes_are_refused(cli, tmp_path, labels, detail):
    images = image_folder(tmp_path / "images")
    text = f"name: tri\ninput: [1, 8, 8]\nlabels: {labels}\nlayers: [flatten, linear: 3]\n"
    spec_file(tmp_path, text)  # run from its folder, so that messages name it `net.yaml`
    result = cli("train", "net.yaml", "--data", f"folder:{images}", "--out", tmp_path / "run", cwd=tmp_path)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith(f"net.yaml:{line_of(text, 'labels:')}:")  # points at `labels:`
    assert detail in result.err
    assert labels in result.err and json.dumps(list(FOLDER_CLASSES)) in result.err  # both lists shown
    assert not (tmp_path / "run").exists()


def test_labels_everywhere_are_the_ones_training_used(folder_run, tmp_path, cli):
    import onnx

    run, _, _ = folder_run
    expected = sorted(FOLDER_CLASSES)  # an image folder's classes are its sorted subfolder names
    assert json.loads((run / "config.json").read_text())["data"]["classes"] == expected
    assert json.loads((run / "per_class.json").read_text())["classes"] == expected
    for weights in ("last", "best"):
        assert read_metadata(run / f"{weights}.safetensors")["labels"] == expected
    result = cli("export", run, "--onnx", "-o", tmp_path / "tri.onnx")
    assert result.code == 0, result.err
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "tri.onnx")).metadata_props}
    assert json.loads(meta["netspec.labels"]) == expected


def test_exporting_a_spec_whose_labels_do_not_fit_its_outputs_is_refused(cli, tmp_path):
    text = 'name: off\ninput: [1, 8, 8]\nlabels: ["a", "b"]\nlayers: [flatten, linear: 3]\n'
    spec_file(tmp_path, text)
    result = cli("export", "net.yaml", "--onnx", "-o", tmp_path / "off.onnx", cwd=tmp_path)
    assert result.code == 2 and "Traceback" not in result.err
    assert f"net.yaml:{line_of(text, 'labels:')}:" in result.err
    assert 'the spec names 2 classes ["a", "b"] but off outputs 3 scores' in result.err
    assert not (tmp_path / "off.onnx").exists()


# -- eval on other data ---------------------------------------------------------------------------

@pytest.mark.parametrize("other", [("dark", "light"), ("a", "b", "c", "d")])
def test_eval_on_data_with_another_class_count_is_refused(folder_run, cli, tmp_path, other):
    run, _, _ = folder_run
    images = image_folder(tmp_path / "other", other)
    before = (run / "eval.json").read_bytes() if (run / "eval.json").exists() else None
    result = cli("eval", run, "--data", f"folder:{images}")
    assert result.code == 2 and "Traceback" not in result.err
    assert "gives 3 scores, one per class of folder:" in result.err
    assert f"but folder:{images} has {len(other)} classes {json.dumps(list(other))}" in result.err
    assert "hint: evaluate on data with the 3 classes" in result.err
    assert ((run / "eval.json").read_bytes() if (run / "eval.json").exists() else None) == before


def test_eval_on_data_with_other_class_names_is_refused(folder_run, cli, tmp_path):
    run, _, _ = folder_run
    images = image_folder(tmp_path / "other", ("cat", "dog", "emu"))
    result = cli("eval", run, "--data", f"folder:{images}")
    assert result.code == 2
    assert 'output 0 is trained as "dark", the data has "cat"' in result.err


def test_eval_on_another_folder_with_the_same_classes(folder_run, cli, tmp_path):
    run, _, _ = folder_run
    image_folder(tmp_path / "again" / "train", per_class=2)
    held_out = image_folder(tmp_path / "again" / "val", per_class=5)  # all of val/ is evaluated
    result = cli("eval", run, "--data", f"folder:{tmp_path / 'again'}", "--weights", "last")
    assert result.code == 0, result.err
    record = json.loads((run / "eval.json").read_text())
    assert list(record["per_class"]) == list(FOLDER_CLASSES)
    assert sum(map(sum, record["confusion"])) == sum(1 for _ in held_out.rglob("*.png")) == 15


def test_weights_whose_labels_do_not_fit_the_outputs_are_damaged(folder_run, cli, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from netspec.train.checkpoint import save_weights

    run, _, _ = folder_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    meta = read_metadata(copy / "last.safetensors")
    save_weights(copy / "last.safetensors", load_file(copy / "last.safetensors"), {**meta, "labels": ["a", "b"]})
    result = cli("eval", copy, "--weights", "last")
    assert result.code == 2 and "Traceback" not in result.err
    assert "its metadata names 2 classes for 3 outputs" in result.err


# -- item 6: eval reads datasets from the default root, never the cwd ---------------------------

def test_eval_on_mnist_reads_the_default_root_and_writes_nothing_in_the_cwd(cli, tmp_path, monkeypatch):
    """`netspec eval RUN --data mnist`, run from an empty folder, finds the files where `train`
    keeps them (netspec.data.DEFAULT_ROOT) and leaves the folder empty."""
    import netspec.data
    from tests.test_data import write_mnist

    root = tmp_path / "cache"
    _, test_labels = write_mnist(root, test=20)
    monkeypatch.setattr(netspec.data, "DEFAULT_ROOT", root)
    spec = spec_file(tmp_path, "name: flat\ninput: [1, 28, 28]\nlayers: [flatten, linear: 10]\n")
    run = train(spec, {"data": "digits", "epochs": 1, "batch_size": 64}, out=tmp_path / "run")
    here = tmp_path / "here"
    here.mkdir()
    result = cli("eval", run, "--data", "mnist", cwd=here)
    assert result.code == 0, result.err
    record = json.loads((run / "eval.json").read_text())
    assert record["data"] == "mnist" and sum(map(sum, record["confusion"])) == len(test_labels["t10k"])
    assert [sum(row) for row in record["confusion"]] == [int((test_labels["t10k"] == k).sum()) for k in range(10)]
    assert list(here.iterdir()) == []


# -- item 11: validation is preprocessed exactly like training ------------------------------------

MYCNN = """name: mycnn
input: [1, 16, 16]
blocks:
  stage:
    params: {out: required}
    layers:
      - conv: {out: $out, kernel: 3, padding: 1}
      - bn
      - relu
      - maxpool: 2
layers:
  - stage: {out: 8}
  - stage: {out: 16}
  - flatten
  - linear: 10
"""


def test_no_normalize_validation_matches_eval_for_a_mycnn_style_spec(cli, tmp_path):
    """The issue's reproducer: a Conv-BN-ReLU-Pool spec on digits with --no-normalize; the
    accuracy training logged for the last and the best epoch is what `netspec eval` measures."""
    spec_file(tmp_path, MYCNN, "mycnn.yaml")
    trained = cli("train", "mycnn.yaml", "--data", "digits", "--no-normalize", "--epochs", "3", "--batch-size", "64",
                  "--lr", "0.01", "--out", "run", cwd=tmp_path)
    assert trained.code == 0, trained.err
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for weights, logged in (("last", records[-1]["val_acc"]), ("best", max(r["val_acc"] for r in records))):
        result = cli("eval", "run", "--weights", weights, cwd=tmp_path)
        assert result.code == 0, result.err
        assert json.loads((tmp_path / "run" / "eval.json").read_text())["accuracy"] == pytest.approx(logged, abs=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
def test_training_and_validation_batches_are_the_one_preprocessing(tmp_path, normalize):
    """Each batch training and validation feed the model is netspec.preprocess.normalise (what
    `infer` applies) of its uint8 images, with the run's normalize setting."""
    import numpy as np

    from netspec.data.batches import epoch_order
    from netspec.preprocess import normalise
    from netspec.progress import Progress
    from netspec.train.loop import Trainer
    from netspec.train.setup import prepare

    spec = spec_file(tmp_path, MYCNN, "mycnn.yaml")
    setup = prepare(spec, {"data": "digits", "epochs": 1, "batch_size": 32, "augment": {"normalize": normalize}},
                    [], tmp_path / "run", False, None, Progress(enabled=False))
    try:
        trainer = Trainer(setup)
        data, seed = setup.data, setup.config.seed
        x_val, _ = next(trainer.val_batches.epoch(0, 0))
        x_train, _ = next(trainer.train_batches.epoch(1, seed, 0, trainer.augment_rng))
    finally:
        setup.release()
    order = epoch_order(len(data.train), seed, 1)[:32]
    expected_train = normalise(data.train.images[order].numpy(), data.mean, data.std, normalize)
    expected_val = normalise(data.val.images[:32].numpy(), data.mean, data.std, normalize)
    np.testing.assert_allclose(x_train.numpy(), expected_train, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x_val.numpy(), expected_val, rtol=0, atol=1e-6)
