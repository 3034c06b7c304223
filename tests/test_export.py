"""`netspec export --onnx`, `netspec infer`, `netspec bench`: files that answer like PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

import netspec.exporters.onnx as onnx_export
from netspec.errors import ExportError
from netspec.exporters.onnx import export_onnx, load_source
from tests.conftest import SPECS, lenet_digits_run, spec_files


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in spec_files() if p.parent.name != "torchvision"],
                         ids=lambda p: str(p.relative_to(SPECS)))
def test_every_spec_exports_and_matches_pytorch(path, tmp_path):
    # the zoo (specs/torchvision/) is exported at reduced sizes by tests/test_zoo.py, once
    source = load_source(path)
    report = export_onnx(source, tmp_path / "model.onnx")
    assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    assert report.data_file is None and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return lenet_digits_run(tmp_path_factory, "export", 8)


@pytest.fixture(scope="module")
def digits_model(digits_run):
    report = export_onnx(load_source(digits_run), digits_run / "lenet5.onnx")
    assert report.real_samples == 256 and report.real_top1_agreement == 1.0
    return digits_run / "lenet5.onnx"


def test_metadata_makes_the_file_self_describing(digits_model, digits_run):
    meta = {p.key: p.value for p in onnx.load(str(digits_model), load_external_data=False).metadata_props}
    config = json.loads((digits_run / "config.json").read_text())
    assert meta["netspec.spec_name"] == "lenet5" and json.loads(meta["netspec.input_shape"]) == [1, 28, 28]
    assert json.loads(meta["netspec.labels"]) == [str(d) for d in range(10)]
    assert json.loads(meta["netspec.mean"]) == pytest.approx(config["data"]["mean"])
    assert meta["netspec.channels"] == "L" and json.loads(meta["netspec.normalize"]) is True
    assert len(meta["netspec.spec_sha256"]) == 64 and meta["netspec.version"]


def write_digit_pngs(folder, count=300):
    """Real 8×8 digits from the validation split, written as 8×8 grayscale PNG files."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, val = train_test_split(np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0)
    folder.mkdir(exist_ok=True)
    paths, labels = [], []
    for i in val[:count]:
        path = folder / f"digit{i}.png"
        Image.fromarray(np.round(digits.images[i] * (255 / 16)).astype(np.uint8)).save(path)
        paths.append(path)
        labels.append(str(digits.target[i]))
    return paths, labels


def test_infer_classifies_digit_pngs(digits_model, tmp_path, cli):
    paths, labels = write_digit_pngs(tmp_path / "pngs")
    result = cli("infer", digits_model, *paths, "--json", "--top-k", "3")
    assert result.code == 0, result.err
    predictions = json.loads(result.out)
    assert [p["input"] for p in predictions] == [str(p) for p in paths]
    assert {"input", "index", "label", "prob", "top_k"} <= set(predictions[0])
    assert len(predictions[0]["top_k"]) == 3 and predictions[0]["top_k"][0]["label"] == predictions[0]["label"]
    accuracy = np.mean([p["label"] == want for p, want in zip(predictions, labels)])
    assert accuracy >= 0.95
    assert "provider: CPUExecutionProvider" in result.err


def test_infer_takes_npy_and_a_fixed_batch_model(digits_run, tmp_path, cli):
    fixed = tmp_path / "fixed.onnx"
    export_onnx(load_source(digits_run), fixed, batch=4)
    png = write_digit_pngs(tmp_path / "pngs", 1)[0][0]
    image = np.asarray(Image.open(png))
    np.save(tmp_path / "u8.npy", image)
    np.save(tmp_path / "f32.npy", image.astype(np.float32) / 255)
    np.save(tmp_path / "chw.npy", image[None])
    result = cli("infer", fixed, png, tmp_path / "u8.npy", tmp_path / "f32.npy", tmp_path / "chw.npy", png, "--json")
    assert result.code == 0, result.err
    labels = {p["label"] for p in json.loads(result.out)}
    assert len(labels) == 1  # the same digit, however it was stored


def _text_as_png(folder):
    (folder / "x.png").write_text("not an image")
    return folder / "x.png"


def _array(name, array):
    def make(folder):
        np.save(folder / name, array)
        return folder / name
    return make


@pytest.mark.parametrize("make, message", [
    (_text_as_png, "cannot read it as an image"),
    (lambda folder: folder / "missing.png", "no such file"),
    (_array("bad.npy", np.zeros((2, 3, 4, 5))), "expected an image array"),
    (_array("neg.npy", -np.ones((8, 8), np.float32)), "float arrays must hold values in [0, 1]"),
])
def test_bad_inputs_are_one_line_errors(digits_model, tmp_path, cli, make, message):
    result = cli("infer", digits_model, make(tmp_path))
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_a_file_that_is_not_onnx(tmp_path, cli):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x00\x01 definitely not protobuf")
    result = cli("infer", fake, fake)
    assert result.code == 2 and "is not a loadable ONNX model" in result.err


def test_missing_gpu_auto_falls_back_an_explicit_request_is_an_error(digits_model, tmp_path, cli):
    # issue 9, item 7: `--provider cuda` without a GPU used to exit 0 on the CPU
    from netspec.exporters.runtime import gpu_present

    if gpu_present():
        pytest.skip("this machine has a GPU")
    png = write_digit_pngs(tmp_path / "pngs", 1)[0][0]
    result = cli("infer", digits_model, png, "--provider", "cuda")
    assert result.code == 2 and "--provider" in result.err and "Traceback" not in result.err
    result = cli("infer", digits_model, png, "--provider", "auto")
    assert result.code == 0 and "note: no GPU found: running on CPU" in result.err


def test_failed_parity_exits_1_and_keeps_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "_compare", lambda runtime, model, x: (0.5, 0))
    with pytest.raises(ExportError) as info:
        export_onnx(load_source(SPECS / "lenet.yaml"), tmp_path / "lenet.onnx")
    assert info.value.exit_code == 1 and "disagrees with PyTorch" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_large_models_get_a_correctly_referenced_data_file(tmp_path, monkeypatch):
    """Above 2 GB the weights go to `<name>.onnx.data`; it must travel with the model."""
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    report = export_onnx(load_source(SPECS / "lenet.yaml"), tmp_path / "out" / "lenet.onnx")
    assert report.data_file == tmp_path / "out" / "lenet.onnx.data"
    moved = tmp_path / "elsewhere"
    (tmp_path / "out").rename(moved)
    onnx.checker.check_model(str(moved / "lenet.onnx"), full_check=True)
    from netspec.exporters.runtime import OnnxModel

    out = OnnxModel(moved / "lenet.onnx", "cpu").run(np.zeros((2, 1, 28, 28), np.float32))
    assert out.shape == (2, 10)


def test_a_stale_data_file_beside_the_target_is_not_reported_as_the_models(tmp_path, monkeypatch):
    """An earlier large export left `<name>.onnx.data`; a small re-export must not claim it."""
    target = tmp_path / "lenet.onnx"
    with monkeypatch.context() as patched:
        patched.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
        assert export_onnx(load_source(SPECS / "lenet.yaml"), target).data_file is not None
    report = export_onnx(load_source(SPECS / "lenet.yaml"), target)
    assert report.data_file is None
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL
                   for init in onnx.load(str(target), load_external_data=False).graph.initializer)
    lines = report.lines()
    assert not any(".data" in line for line in lines if line.startswith("wrote"))
    assert any("lenet.onnx.data beside the model is not part of it" in line for line in lines)
    assert (tmp_path / "lenet.onnx.data").exists()  # someone else's file is not deleted


def test_bench_compares_eager_and_onnxruntime(cli):
    result = cli("bench", SPECS / "lenet.yaml", "--batch", "1,8", "--seconds", "0.2", "--threads", "1")
    assert result.code == 0, result.err
    assert "pytorch eager" in result.out and "onnxruntime cpu" in result.out
    assert "parity: max |onnxruntime − torch|" in result.out and "threads: 1" in result.out


def test_a_fixed_batch_larger_than_the_data_exports_and_benches(digits_run, tmp_path, cli):
    report = export_onnx(load_source(digits_run), tmp_path / "b512.onnx", batch=512)  # 360 validation images
    assert report.real_samples == 360 and report.real_top1_agreement == 1.0
    result = cli("bench", tmp_path / "b512.onnx", "--batch", "1", "--seconds", "0.1")
    assert result.code == 0, result.err
    assert cli("bench", tmp_path / "b512.onnx", "--batch", "-1").code == 2


@pytest.mark.parametrize("command, option", [("export", ["--input", "1x32x32"]), ("export", ["--set", "classes=3"]),
                                             ("bench", ["--input", "1x32x32"])])
def test_a_run_directory_refuses_size_and_var_overrides_instead_of_ignoring_them(command, option, digits_run,
                                                                                  tmp_path, cli):
    """The run's model keeps the size it was trained at: an override it would silently drop is refused."""
    extra = ["--onnx", "-o", tmp_path / "x.onnx"] if command == "export" else ["--seconds", "0.1"]
    result = cli(command, digits_run, *option, *extra)
    assert result.code == 2 and option[0] in result.err and "run directory" in result.err
    assert len(result.err.strip().splitlines()) <= 2 and "Traceback" not in result.err
    assert not (tmp_path / "x.onnx").exists()
