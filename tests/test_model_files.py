"""Hostile `.onnx` files and inputs for `netspec infer`/`bench`: clean errors (exit 2), no internal
errors, no huge allocations, nothing read outside the model's folder, nothing raw on the terminal."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from netspec.exporters.onnx import export_onnx, load_source

TINY_SPEC = """\
name: tiny
input: [1, 8, 8]
labels: [zero, one, two]
layers:
  - flatten
  - linear: 3
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    (folder / "tiny.yaml").write_text(TINY_SPEC)
    export_onnx(load_source(folder / "tiny.yaml"), folder / "tiny.onnx")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(folder / "digit.png")
    return folder


def edited(model_dir, tmp_path, name="edited.onnx", **metadata):
    """A copy of the tiny model with netspec.<key> metadata set (a value of None deletes it)."""
    model = onnx.load(str(model_dir / "tiny.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in metadata.items():
        props.pop(f"netspec.{key}", None)
        if value is not None:
            props[f"netspec.{key}"] = value
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(tmp_path / name))
    return tmp_path / name


def assert_clean_error(result, *fragments):
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err and "internal error" not in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


def test_the_unedited_model_classifies(model_dir, cli):
    result = cli("infer", model_dir / "tiny.onnx", model_dir / "digit.png", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)[0]["label"] in ("zero", "one", "two")


@pytest.mark.parametrize("key, value, message", [
    ("input_shape", "[1, 100000, 100000]", "says 1×100000×100000 but the graph's input is 1×8×8"),
    ("input_shape", "[1, 8]", "expected [C, H, W] or [N]"),
    ("input_shape", "[1, 8, 9]", "says 1×8×9 but the graph's input is 1×8×8"),
    ("input_shape", "[1.0, 8, 8]", "positive integers"),
    ("input_shape", "[true, 8, 8]", "positive integers"),
    ("input_shape", "[0, 8, 8]", "positive integers"),
    ("input_shape", "{not json", "not valid JSON"),
    ("input_shape", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("input_shape", "9" * 5000, "not valid JSON"),
    ("labels", json.dumps(["a", "b", "c", "d"]), "has 4 entries, the model gives 3 scores"),
    ("labels", "[1, 2, 3]", "list of text"),
    ("labels", '"zero one two"', "list of text"),
    ("labels", json.dumps(["x" * 100] * 50_000), "characters; the limit is"),
    ("mean", "[0.5, 0.5]", "has 2 entries, the model has 1"),
    ("mean", "[NaN]", "finite numbers"),
    ("std", "[0]", "every std must be > 0"),
    ("std", "[-1.5]", "every std must be > 0"),
    ("std", '["wide"]', "list of numbers"),
    ("std", "[Infinity]", "finite numbers"),
    ("normalize", '"yes"', "expected true or false"),
    ("output", "softmaxish", "expected one of logits, log_probs, probs"),
    ("channels", "CMYK", "expected one of L, RGB"),
])
def test_bad_metadata_is_an_error_naming_file_and_field(model_dir, tmp_path, cli, key, value, message):
    model = edited(model_dir, tmp_path, **{key: value})
    result = cli("infer", model, model_dir / "digit.png")
    assert_clean_error(result, str(model), f"netspec.{key}", message)


def test_normalize_without_mean_and_std_is_an_error(model_dir, tmp_path, cli):
    model = edited(model_dir, tmp_path, normalize="true", mean=None, std=None)
    assert_clean_error(cli("infer", model, model_dir / "digit.png"), "netspec.normalize", "missing")


def test_a_duplicated_metadata_key_is_refused(model_dir, tmp_path, cli):
    model = onnx.load(str(model_dir / "tiny.onnx"))
    model.metadata_props.add(key="netspec.labels", value=json.dumps(["a", "b", "c"]))
    onnx.save(model, str(tmp_path / "twice.onnx"))
    assert_clean_error(cli("infer", tmp_path / "twice.onnx", model_dir / "digit.png"), "given twice")


def test_bench_refuses_bad_metadata_too(model_dir, tmp_path, cli):
    model = edited(model_dir, tmp_path, input_shape="[1, 100000, 100000]")
    assert_clean_error(cli("bench", model, "--batch", "1", "--seconds", "0.1"), "netspec.input_shape")


def open_size_model(tmp_path, input_shape: str | None):
    """A classifier whose graph leaves its input sizes open (N×C×H×W: a mean over H×W; N×F when
    the metadata gives one size: the identity), so the metadata decides."""
    if input_shape is not None and len(json.loads(input_shape)) == 1:
        model = graph_model(tmp_path, "open", [helper.make_node("Identity", ["x"], ["y"])],
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "F"])])
    else:
        axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
        model = graph_model(tmp_path, "open", [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", "H", "W"])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C"])], [axes])
    if input_shape is not None:
        proto = onnx.load(str(model))
        proto.metadata_props.add(key="netspec.input_shape", value=input_shape)
        onnx.save(proto, str(model))
    return model


@pytest.mark.parametrize("shape, message", [
    ("[1, 100000, 100000]", "side above 16,384"),
    ("[65, 8, 8]", "65 channels; the limit is 64"),
    ("[4, 8192, 8192]", "268,435,456 values per sample; the limit is 201,326,592"),
    ("[1000000000]", "values per sample"),
])
def test_input_sizes_beyond_the_bounds_are_refused_before_any_resize(model_dir, tmp_path, cli, shape, message):
    model = open_size_model(tmp_path, shape)
    assert_clean_error(cli("infer", model, model_dir / "digit.png"), "netspec.input_shape", message)


def test_open_sizes_come_from_the_metadata(model_dir, tmp_path, cli):
    result = cli("infer", open_size_model(tmp_path, "[3, 16, 16]"), model_dir / "digit.png", "--json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)[0]["top_k"]) == 3  # the graph's C, set to 3 by the metadata
    no_metadata = open_size_model(tmp_path, None)
    assert_clean_error(cli("infer", no_metadata, model_dir / "digit.png"), "infer needs a fixed C×H×W input")
    assert_clean_error(cli("bench", no_metadata, "--seconds", "0.1"), "bench needs a fixed input size")


# -- the file itself ------------------------------------------------------------------------------
def test_a_truncated_model(model_dir, tmp_path, cli):
    data = (model_dir / "tiny.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) // 2])
    assert_clean_error(cli("infer", tmp_path / "cut.onnx", model_dir / "digit.png"), "not a loadable ONNX model")


def test_a_directory_or_a_fifo_as_model(model_dir, tmp_path, cli):
    assert_clean_error(cli("infer", tmp_path, model_dir / "digit.png"), "is a directory")
    os.mkfifo(tmp_path / "pipe.onnx")  # opening it would block forever
    assert_clean_error(cli("infer", tmp_path / "pipe.onnx", model_dir / "digit.png"), "not a regular file")
    assert_clean_error(cli("infer", tmp_path / "absent.onnx", model_dir / "digit.png"), "no such file")


def with_external_weights(model_dir, folder, location, data: bytes | None = None, length=None):
    """The tiny model with its weight matrix moved to external data at `location`."""
    model = onnx.load(str(model_dir / "tiny.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    size = len(tensor.raw_data)
    if data is not None:
        (folder / location).write_bytes(data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length or size))):
        tensor.external_data.add(key=key, value=value)
    onnx.save(model, str(folder / "model.onnx"))
    return folder / "model.onnx", size


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_model_folder_is_refused(model_dir, tmp_path, cli, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    model, _ = with_external_weights(model_dir, folder, location)
    assert_clean_error(cli("infer", model, model_dir / "digit.png"), "outside the model's folder")


def test_external_data_through_a_symlink_out_is_refused(model_dir, tmp_path, cli):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(tmp_path / "secret.bin")
    model, _ = with_external_weights(model_dir, folder, "weights.bin")
    assert_clean_error(cli("infer", model, model_dir / "digit.png"), "outside the model's folder")


def test_external_data_beside_the_model_works_and_short_or_missing_is_an_error(model_dir, tmp_path, cli):
    model, size = with_external_weights(model_dir, tmp_path, "w.bin", b"\0" * 4096)
    assert cli("infer", model, model_dir / "digit.png").code == 0
    model, _ = with_external_weights(model_dir, tmp_path, "w.bin", b"\0" * 4096, length=10**6)
    assert_clean_error(cli("infer", model, model_dir / "digit.png"), "do not fit")
    (tmp_path / "w.bin").unlink()
    assert_clean_error(cli("infer", model, model_dir / "digit.png"), "is missing")


def graph_model(tmp_path, name, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)  # what ORT reads
    onnx.save(model, str(tmp_path / f"{name}.onnx"))
    return tmp_path / f"{name}.onnx"


def test_a_model_that_is_not_a_netspec_classifier(model_dir, tmp_path, cli):
    ints = graph_model(tmp_path, "ints", [helper.make_node("Identity", ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 1, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 1, 8, 8])])
    assert_clean_error(cli("infer", ints, model_dir / "digit.png"), "netspec models take float")
    two = graph_model(tmp_path, "two", [helper.make_node("Add", ["a", "b"], ["y"])],
                      [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1, 8, 8]) for n in "ab"],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])])
    assert_clean_error(cli("infer", two, model_dir / "digit.png"), "takes 2 inputs")


def test_a_model_that_fails_while_running_is_a_clean_error(model_dir, tmp_path, cli):
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [7])
    broken = graph_model(tmp_path, "broken", [helper.make_node("Reshape", ["x", "shape"], ["y"])],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    assert_clean_error(cli("infer", broken, model_dir / "digit.png"), "onnxruntime cannot run the model")


# -- inputs ---------------------------------------------------------------------------------------
def png_claiming(path, width, height):
    """A valid 8×8 PNG whose header claims width×height (the CRC fixed up): a bomb's header."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side", [30_000, 10_000])  # beyond 2× Pillow's limit (its error), within (its warning)
def test_a_png_decompression_bomb_is_refused_from_its_header(model_dir, tmp_path, cli, side):
    bomb = png_claiming(tmp_path / "bomb.png", side, side)
    assert_clean_error(cli("infer", model_dir / "tiny.onnx", bomb), "bomb.png: error:", "decompression bomb")


def test_the_pixel_cap_holds_even_with_pillows_limit_switched_off(model_dir, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as some libraries do globally
    bomb = png_claiming(tmp_path / "bomb.png", 30_000, 30_000)
    assert_clean_error(cli("infer", model_dir / "tiny.onnx", bomb),
                       "900,000,000 pixels, more than the 67,108,864 netspec decodes")


def npy_with_header(path, header: dict, body: bytes):
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        file.write(body)
    return path


class _Touch:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def write_pickled_npy(path, marker):
    np.save(path, np.array([_Touch(marker)] * 4, dtype=object).reshape(2, 2), allow_pickle=True)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: npy_with_header(p, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**7)}, b"\0" * 16),
     "the header claims 100,000,000,000,000 values"),
    (lambda p: npy_with_header(p, {"descr": "<f4", "fortran_order": False, "shape": (28, 28)}, b"\0" * 10),
     "the header claims 3,136 bytes of data, the file holds 10"),
    (lambda p: npy_with_header(p, {"descr": "<f4", "fortran_order": False, "shape": (-2, -14)}, b"\0" * 112),
     "invalid"),
    (lambda p: (p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}  \n"), p)[1], "not a plain numpy array"),
    (lambda p: (np.save(p, np.zeros((0, 8), np.float32)), p)[1], "the array is empty"),
    (lambda p: (np.save(p, np.full((8, 8), np.nan, np.float32)), p)[1], "NaN or infinite"),
    (lambda p: (np.save(p, np.full((8, 8), np.inf)), p)[1], "NaN or infinite"),
    (lambda p: (np.save(p, np.full((8, 8), 300, np.int32)), p)[1], "expected uint8 0–255"),
    (lambda p: (np.save(p, np.zeros((8, 8), np.complex64)), p)[1], "got dtype complex64"),
    (lambda p: (np.save(p, np.zeros((4, 8, 8), np.uint8)), p)[1], "expected an image array"),
])
def test_bad_npy_inputs(model_dir, tmp_path, cli, make, message):
    path = make(tmp_path / "x.npy")
    assert_clean_error(cli("infer", model_dir / "tiny.onnx", path), "x.npy: error:", message)


def test_an_object_npy_never_unpickles(model_dir, tmp_path, cli):
    marker = tmp_path / "marker"
    path = write_pickled_npy(tmp_path / "evil.npy", marker)
    assert_clean_error(cli("infer", model_dir / "tiny.onnx", path), "evil.npy: error:", "dtype object")
    assert not marker.exists()


@pytest.mark.parametrize("array", [
    np.zeros((3, 16, 16), np.float32),  # C×H×W RGB: converted to gray and resized, as images are
    np.zeros((16, 16, 3), np.uint8),
    np.asfortranarray(np.zeros((8, 8), np.uint8)),
])
def test_npy_layouts_of_another_size_are_adapted(model_dir, tmp_path, cli, array):
    np.save(tmp_path / "x.npy", array)
    result = cli("infer", model_dir / "tiny.onnx", tmp_path / "x.npy")
    assert result.code == 0, result.err


def test_one_bad_input_keeps_the_others(model_dir, tmp_path, cli):
    np.save(tmp_path / "nan.npy", np.full((8, 8), np.nan, np.float32))
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block forever
    png = model_dir / "digit.png"
    result = cli("infer", model_dir / "tiny.onnx", png, tmp_path / "nan.npy", tmp_path / "absent.png",
                 tmp_path / "pipe.png", png, "--json")
    assert_clean_error(result, f"{tmp_path / 'nan.npy'}: error:", f"{tmp_path / 'absent.png'}: error: no such file",
                       f"{tmp_path / 'pipe.png'}: error: is not a regular file")
    assert [p["input"] for p in json.loads(result.out)] == [str(png), str(png)]
    assert sum(": error:" in line for line in result.err.splitlines()) == 3  # one line per bad input


ESCAPES = ["\x1b[31mred", "\u202eevil", "bell\x07", "csi\x9b2J"]


def test_labels_and_names_from_files_never_reach_the_terminal_raw(model_dir, tmp_path, cli):
    model = edited(model_dir, tmp_path, labels=json.dumps(ESCAPES[:3]))
    for args in ((), ("--json",)):
        result = cli("infer", model, model_dir / "digit.png", "--top-k", "3", *args)
        assert result.code == 0, result.err
        assert not any(ch in result.out for ch in "\x1b\u202e\x07\x9b"), result.out
    assert "\\x1b[31mred" in cli("infer", model, model_dir / "digit.png", "--top-k", "3").out
    name = tmp_path / f"a{ESCAPES[3]}\x1b]0;title\x07.png"
    result = cli("infer", model, name)
    assert_clean_error(result, "no such file")
    assert not any(ch in result.err for ch in "\x1b\x07\x9b")
