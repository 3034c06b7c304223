"""`netspec export --onnx --quantize int8|fp16`: quantized files that are verified, or refused.

One LeNet is trained (module fixture) on a folder dataset of the digits written as PNG files
(train/ and val/ by class, netspec's digits split), so that the validation PNGs are exactly
what `netspec infer` is then given, and so that a test can spoil the calibration images the
export reads from the run's training folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

import netspec.exporters.quantize as quantize
from netspec.data import digits_arrays
from netspec.exporters.onnx import load
from netspec.train.loop import train
from tests.conftest import ROOT, SPECS, CliResult


def run_cli(*args) -> CliResult:
    """`netspec ARGS...` in this process (for module fixtures, where the `cli` fixture cannot be used)."""
    from netspec import cli as cli_module

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_module.main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def write_digit_folder(root):
    images, labels, train_index, val_index = digits_arrays()
    for split, indices in (("train", train_index), ("val", val_index)):
        for i in indices:
            folder = root / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i, 0]).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = write_digit_folder(tmp_path_factory.mktemp("digits"))
    out = tmp_path_factory.mktemp("quantize") / "lenet"
    train(SPECS / "lenet.yaml", {"data": f"folder:{data}", "epochs": 4, "batch_size": 16, "workers": 0}, out=out)
    return out, data


@pytest.fixture(scope="module")
def exported(run):
    """The run exported as float32 and as int8 through the CLI: {kind: (path, CliResult)}."""
    run_dir, _ = run
    files = {}
    for kind, extra in (("fp32", ()), ("int8", ("--quantize", "int8"))):
        path = run_dir / f"{kind}.onnx"
        files[kind] = (path, run_cli("export", run_dir, "--onnx", "-o", path, *extra))
        assert files[kind][1].code == 0, files[kind][1].err
    return files


DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def shown_output(after: str) -> str:
    """The first ``` block after the text `after` in docs/deployment.md."""
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    start = text.index("```", text.index(after)) + 3
    return text[text.index("\n", start) + 1:text.index("```", start)]


def masked(output: str) -> list[str]:
    """Output lines with what differs between the doc's run and this test's masked: file paths,
    the dataset folder, and measured numbers (the wording, order and kind of each line remain)."""
    output = re.sub(r"wrote \S+", "wrote FILE", output)
    output = re.sub(r"folder:[^,)\s]+", "folder:DATA", output)
    output = re.sub(r"[-+]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?", "N", output)
    return output.strip().splitlines()


def infer_accuracy(model, val_folder) -> tuple[float, list[str]]:
    result = run_cli("infer", model, val_folder, "--json", "--top-k", "1")
    assert result.code == 0, result.err
    predictions = json.loads(result.out)
    truth = [p["input"].split("/")[-2] for p in predictions]  # val/<class>/<i>.png
    assert len(predictions) == 360
    return 100.0 * np.mean([p["label"] == t for p, t in zip(predictions, truth)]), [p["label"] for p in predictions]


def test_int8_has_quantized_ops_and_classifies_digit_pngs_like_fp32(exported, run):
    _, data = run
    path, result = exported["int8"]
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_convs = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_convs) == 2  # LeNet's two convolutions' weights
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch axis is still dynamic
    assert path.stat().st_size < exported["fp32"][0].stat().st_size / 2
    fp32, fp32_labels = infer_accuracy(exported["fp32"][0], data / "val")
    int8, int8_labels = infer_accuracy(path, data / "val")
    assert int8 >= 95 and abs(int8 - fp32) <= 1
    # what the export printed is what infer measures on the same 360 validation images
    printed = re.search(r"float32 ([\d.]+)%, int8 ([\d.]+)% on 360 validation samples", result.out)
    assert printed, result.out
    assert float(printed.group(1)) == pytest.approx(fp32, abs=0.01)
    assert float(printed.group(2)) == pytest.approx(int8, abs=0.01)
    same = int(np.sum(np.array(fp32_labels) == np.array(int8_labels)))
    printed = re.search(r"top-1 agreement [\d.]+% \((\d+) of 360\)", result.out)
    assert printed and abs(int(printed.group(1)) - same) <= 1  # a near tie may go either way at another batch size


def test_model_card_records_the_quantization(exported):
    path, result = exported["int8"]
    card = load(path, provider="cpu").card
    assert card.labels == [str(d) for d in range(10)] and card.normalize  # the float file's card is kept
    q = card.quantization
    assert {k: q[k] for k in ("type", "format", "per_channel", "weights")} == \
        {"type": "int8", "format": "QDQ", "per_channel": True, "weights": "int8"}
    assert q["activations"] in ("int8", "uint8") and q["calibration"]["images"] == 256
    assert q["calibration"]["data"].endswith("training split")
    printed = re.search(r"float32 ([\d.]+)%, int8 ([\d.]+)%", result.out)
    assert q["accuracy"]["samples"] == 360
    assert q["accuracy"]["fp32"] == pytest.approx(float(printed.group(1)), abs=0.01)
    assert q["accuracy"]["int8"] == pytest.approx(float(printed.group(2)), abs=0.01)


def test_a_calibration_that_destroys_accuracy_is_refused(run, cli):
    run_dir, data = run
    backup = data.parent / "train-backup"
    shutil.copytree(data / "train", backup)
    try:  # the run's training images, which int8 calibrates on, become one black image each
        for png in (data / "train").rglob("*.png"):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
        out = run_dir / "spoiled" / "lenet.onnx"
        result = cli("export", run_dir, "--onnx", "--quantize", "int8", "--max-drop", "1", "-o", out)
    finally:
        shutil.rmtree(data / "train")
        backup.rename(data / "train")
    assert result.code == 1, result.out + result.err
    assert "int8 accuracy drops" in result.err and "more than --max-drop 1" in result.err
    assert "was not kept" in result.err and "wrote" not in result.out
    assert list((run_dir / "spoiled").iterdir()) == []  # no file, no scratch folder


def test_fp16_keeps_float32_io_and_answers_like_fp32(run, exported, cli):
    run_dir, data = run
    path = run_dir / "fp16.onnx"
    result = cli("export", run_dir, "--onnx", "--quantize", "fp16", "-o", path)
    assert result.code == 0, result.err
    model = onnx.load(str(path))
    float32 = onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == float32
    assert model.graph.output[0].type.tensor_type.elem_type == float32
    assert all(t.data_type != float32 for t in model.graph.initializer if len(t.dims) == 4)  # conv weights
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    parity = re.search(r"fp16 parity on CPUExecutionProvider.*max \|diff\| = (\S+) \(tolerance (\S+) =", result.out)
    assert parity and float(parity.group(1)) <= float(parity.group(2)), result.out
    card = load(path, provider="cpu").card.quantization
    assert card["type"] == "fp16" and card["parity"][0]["max_abs_diff"] == pytest.approx(float(parity.group(1)),
                                                                                         rel=0.01)
    fp32, fp32_labels = infer_accuracy(exported["fp32"][0], data / "val")
    fp16, fp16_labels = infer_accuracy(path, data / "val")
    assert abs(fp16 - fp32) <= 0.5 and np.mean(np.array(fp32_labels) == np.array(fp16_labels)) >= 0.99


def test_a_spec_calibrates_on_synthetic_images_and_says_so(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(quantize, "cpu_has_vnni", lambda: False)  # as on a CPU without int8 dot products
    out = tmp_path / "lenet.onnx"
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "--quantize", "int8", "--calibration", "64", "-o", out)
    assert result.code == 0, result.err
    assert "warning: int8 calibrated on netspec's synthetic images" in result.out
    assert "int8 may run slower than float32 here" in result.out
    assert "accuracy not measured" in result.out
    q = load(out, provider="cpu").card.quantization
    assert q["calibration"] == {"images": 64, "data": "synthetic, training split", "method": "MinMax"}
    assert "fp32" not in q["accuracy"] and q["accuracy"]["samples"] > 0


@pytest.mark.parametrize("args, option", [
    (("--quantize", "int4"), "--quantize"),
    (("--quantize", "int8", "--max-drop", "-1"), "--max-drop"),
    (("--quantize", "int8", "--max-drop", "101"), "--max-drop"),
    (("--quantize", "int8", "--max-drop", "nan"), "--max-drop"),
    (("--quantize", "int8", "--calibration", "0"), "--calibration"),
])
def test_bad_quantize_options_are_refused_naming_the_option(args, option, tmp_path, cli):
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "-o", tmp_path / "x.onnx", *args)
    assert result.code == 2 and option in result.err and "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []


def test_accuracy_and_agreement():
    class Fixed:
        def run(self, x):
            return np.eye(3, dtype=np.float32)[x[:, 0].astype(int)]

    images = np.array([[0], [1], [2], [2]], np.float32)
    assert quantize.accuracy(Fixed(), images, np.array([0, 1, 2, 0]), batch=3) == 75.0
    a, b = np.eye(4)[[0, 1, 2, 3]], np.eye(4)[[0, 1, 3, 3]]
    assert quantize.agreement(a, b) == 75.0
    with pytest.raises(ValueError):
        quantize.agreement(a, b[:3])


def test_cpu_has_vnni_reads_the_flags(tmp_path, monkeypatch):
    real_open = open
    cpuinfo = tmp_path / "cpuinfo"

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr(quantize, "open", fake_open, raising=False)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert quantize.cpu_has_vnni()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512vl\n")
    assert not quantize.cpu_has_vnni()
    cpuinfo.unlink()
    assert not quantize.cpu_has_vnni()


def test_a_spec_calibrates_on_its_train_data_when_it_loads(tmp_path):
    from types import SimpleNamespace

    from netspec.data import load_data
    from netspec.exporters.calibration import calibration_images, held_out_images
    from netspec.exporters.onnx import load_source

    source = load_source(SPECS / "lenet.yaml")
    # what the spec's `train:` says (lenet.yaml's own, mnist, is not on this machine): digits here
    source.spec = SimpleNamespace(train=SimpleNamespace(data="digits", data_root=None))
    calibrated = calibration_images(source, 64)
    assert calibrated.data == "digits, training split" and calibrated.warnings == []
    assert calibrated.images.shape == (64, 1, 28, 28) and calibrated.images.dtype == np.uint8
    train = load_data("digits", (1, 28, 28)).train
    label_of = {image.numpy().tobytes(): int(label) for image, label in zip(train.images, train.labels)}
    assert all(image.tobytes() in label_of for image in calibrated.images)  # training images, not validation ones
    assert len({label_of[image.tobytes()] for image in calibrated.images}) >= 8  # sampled across the classes
    held = held_out_images(source, calibrated)
    assert held.data == "digits, validation split" and not held.labelled and len(held) == 360

    source.spec = SimpleNamespace(train=SimpleNamespace(data=f"folder:{tmp_path / 'gone'}", data_root=None))
    fallback = calibration_images(source, 16)
    assert fallback.data == "synthetic, training split" and "cannot be loaded" in fallback.warnings[0]


@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_a_fixed_batch_stays_fixed(kind, tmp_path, cli):
    out = tmp_path / "lenet.onnx"  # 10 calibration images: batches of 4, the last one filled up
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "--batch", "4", "--quantize", kind, "--calibration", "10",
                 "-o", out)
    assert result.code == 0, result.err
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]
    assert load(out, provider="cpu").card.quantization["type"] == kind


def test_the_deployment_doc_shows_what_export_prints(exported, run, cli):
    """docs/deployment.md shows real runs of these commands on this fixture's kind of run."""
    shown = shown_output("`netspec export lenet --onnx --quantize int8` gives:")
    assert masked(shown) == masked(exported["int8"][1].out)
    run_dir, _ = run
    fp16 = cli("export", run_dir, "--onnx", "--quantize", "fp16", "-o", run_dir / "shown-fp16.onnx")
    assert masked(shown_output("--quantize fp16 -o lenet/lenet5-fp16.onnx`:")) == masked(fp16.out)
