"""`netspec export --format pt2`: torch.export files that answer like PyTorch, read without unpickling."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from netspec.errors import ModelFileError
from netspec.exporters import pt2
from netspec.run import load_source
from tests.conftest import SPECS, lenet_digits_run
from tests.test_export import write_digit_pngs


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return lenet_digits_run(tmp_path_factory, "pt2", 4)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    """specs/lenet.yaml exported by the library (the CLI path is tested below)."""
    path = tmp_path_factory.mktemp("pt2-spec") / "lenet5.pt2"
    pt2.export(load_source(SPECS / "lenet.yaml"), path)
    return path


def eager_and_file(source, path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        expected = source.model.eval()(x).numpy()
    return expected, pt2.load(path, "cpu").run(x.numpy())


def test_a_spec_exports_through_the_cli_and_the_loaded_file_answers_like_eager(tmp_path, cli):
    result = cli("export", SPECS / "lenet.yaml", "--format", "pt2", "-o", tmp_path)
    assert result.code == 0, result.err
    assert "wrote" in result.out and "batch dynamic" in result.out and "parity, random inputs" in result.out
    assert [p.name for p in tmp_path.iterdir()] == ["lenet5.pt2"]  # no scratch left behind
    source = load_source(SPECS / "lenet.yaml")  # the same seeded weights the CLI exported
    for batch in (1, 7):  # the batch axis is dynamic: sizes other than the traced one
        expected, actual = eager_and_file(source, tmp_path / "lenet5.pt2", torch.randn(batch, 1, 28, 28))
        assert actual.shape == (batch, 10) and np.abs(actual - expected).max() <= 1e-5
    model = pt2.load(tmp_path / "lenet5.pt2")
    assert model.card.name == "lenet5" and model.card.labels == [str(d) for d in range(10)]
    assert model.card.input_shape == [1, 28, 28] and model.fixed_batch is None and model.provider == "torch cpu"


def test_a_fixed_batch_file_runs_other_batch_sizes_in_chunks(tmp_path):
    source = load_source(SPECS / "lenet.yaml")
    report = pt2.export(source, tmp_path / "fixed.pt2", batch=4)
    assert report.batch == "4" and pt2.load(tmp_path / "fixed.pt2").fixed_batch == 4
    expected, actual = eager_and_file(source, tmp_path / "fixed.pt2", torch.randn(6, 1, 28, 28))
    assert actual.shape == (6, 10) and np.abs(actual - expected).max() <= 1e-5


def test_a_trained_run_round_trips_on_its_validation_samples(digits_run, cli):
    result = cli("export", digits_run, "--format", "pt2")
    assert result.code == 0, result.err
    assert "parity, 256 validation samples" in result.out and "top-1 agreement 100.0%" in result.out
    source = load_source(digits_run)
    images = source.card.preprocessing.apply_(source.validation_images(64).astype(np.float32))
    expected, actual = eager_and_file(source, digits_run / "lenet5.pt2", torch.from_numpy(images))
    assert np.abs(actual - expected).max() <= 1e-5
    assert (actual.argmax(1) == expected.argmax(1)).all()
    loaded = pt2.load(digits_run / "lenet5.pt2")
    assert loaded.card.mean == pytest.approx(source.card.mean) and loaded.card.normalize


def test_infer_classifies_digit_pngs_like_the_onnx_export(digits_run, tmp_path, cli):
    if not (digits_run / "lenet5.pt2").exists():
        assert cli("export", digits_run, "--format", "pt2").code == 0
    assert cli("export", digits_run, "--onnx").code == 0
    paths, labels = write_digit_pngs(tmp_path / "pngs", 120)
    # a run holding both files: infer does not guess, it names them
    both = cli("infer", digits_run, *paths[:1])
    assert both.code == 2 and "holds 2 model files (lenet5.onnx, lenet5.pt2)" in both.err
    assert "Traceback" not in both.err
    by_pt2 = cli("infer", digits_run / "lenet5.pt2", *paths, "--json")
    by_onnx = cli("infer", digits_run / "lenet5.onnx", *paths, "--json")
    assert by_pt2.code == 0 and by_onnx.code == 0, by_pt2.err + by_onnx.err
    assert "provider: torch cpu" in by_pt2.err
    pt2_rows, onnx_rows = json.loads(by_pt2.out), json.loads(by_onnx.out)
    assert [r["label"] for r in pt2_rows] == [r["label"] for r in onnx_rows]
    assert max(abs(a["prob"] - b["prob"]) for a, b in zip(pt2_rows, onnx_rows)) < 1e-4
    accuracy = np.mean([r["label"] == label for r, label in zip(pt2_rows, labels)])
    assert accuracy >= 0.9, accuracy


def test_options_of_other_formats_are_refused_naming_the_flag(cli):
    for flag, value in (("--opset", "17"), ("--quantize", "int8")):
        result = cli("export", SPECS / "lenet.yaml", "--format", "pt2", flag, value)
        assert result.code == 2 and f"{flag} does not apply to --format pt2" in result.err
        assert "Traceback" not in result.err


# -- files from others ---------------------------------------------------------------------------

def rewritten(source, target, change=None, replace=None):
    """`source` with some entries rewritten: `change(name, data) -> data`, `replace` {name: data}."""
    replace = replace or {}
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            tail = info.filename.split("/", 1)[1]
            data = replace.get(tail, data if change is None else change(tail, data))
            zout.writestr(info.filename, data)
    return target


class Marker:
    """Unpickled, this would create a file: the proof that nothing was unpickled is that it never appears."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_weights_are_refused_and_never_unpickled(spec_file, tmp_path, cli):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Marker(marker))

    def pickled(name, data):
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            config["config"]["conv0.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        return payload if name == "data/weights/weight_0" else data

    hostile = rewritten(spec_file, tmp_path / "hostile.pt2", pickled)
    result = cli("infer", hostile, tmp_path / "none.png")
    assert result.code == 2 and "stores `conv0.weight` as a pickle" in result.err
    assert "Traceback" not in result.err and not marker.exists()
    # torch.export.load would unpickle the sample inputs (falling back to weights_only=False): never read
    inputs = rewritten(spec_file, tmp_path / "inputs.pt2", replace={"data/sample_inputs/model.pt": payload})
    assert pt2.load(inputs).card.name == "lenet5" and not marker.exists()
    # the files are truly hostile: torch's own loader runs the payload
    with pytest.raises(Exception):
        torch.export.load(hostile)
    assert marker.exists()


def program_edit(edit):
    def change(name, data):
        if name != "models/model.json":
            return data
        program = json.loads(data)
        edit(program)
        return json.dumps(program).encode()
    return change


def _nodes(program):
    return program["graph_module"]["graph"]["nodes"]


HOSTILE_PROGRAMS = {
    "a target outside aten": (lambda p: _nodes(p)[0].update(target="torch.os.system"), "calls `torch.os.system`"),
    "a code-injecting node name": (lambda p: _nodes(p)[0].update(name="x = 1; import os; y"),
                                   "not a Python identifier"),
    "an operator as an argument": (lambda p: _nodes(p)[0]["inputs"][3].update(arg={"as_operator": "torch.os.system"}),
                                   "passes as_operator to an operator"),
    "guard code": (lambda p: p.update(guards_code=["__import__('os').system('true')"]),
                   "that is not arithmetic on its input's sizes"),
    "guard code shifting": (lambda p: p.update(guards_code=["1 << 99999999999 > 0"]),
                            "that is not arithmetic on its input's sizes"),
    "an eval-ing size": (lambda p: p["graph_module"]["graph"]["tensor_values"]["input"]["sizes"][0]["as_expr"]
                         .update(expr_str="__import__('os').getcwd()"), "not a plain sympy expression"),
    "a power size": (lambda p: p["graph_module"]["graph"]["tensor_values"]["input"]["sizes"][0]["as_expr"]
                     .update(expr_str="Integer(9)**Integer(9)**Integer(99)"), "not a plain sympy expression"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PROGRAMS))
def test_programs_that_torch_would_turn_into_code_are_refused(spec_file, tmp_path, case):
    edit, message = HOSTILE_PROGRAMS[case]
    hostile = rewritten(spec_file, tmp_path / "hostile.pt2", program_edit(edit))
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pt2.load(hostile)


def claimed_sizes(path, sizes: dict):
    """Patch the central directory's uncompressed size of entries (by their name's tail)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        start = z.start_dir
    position = start
    for info in infos:
        assert data[position:position + 4] == b"PK\x01\x02"
        name_length, extra, comment = (int.from_bytes(data[position + k:position + k + 2], "little")
                                       for k in (28, 30, 32))
        tail = info.filename.split("/", 1)[1]
        if tail in sizes:
            data[position + 24:position + 28] = sizes[tail].to_bytes(4, "little")
        position += 46 + name_length + extra + comment
    path.write_bytes(bytes(data))
    return path


def test_broken_and_bomb_archives_are_one_line_errors(spec_file, tmp_path, cli):
    big = claimed_sizes(rewritten(spec_file, tmp_path / "big.pt2"), {"data/weights/weight_4": 0xFFFFFFF0})
    many = claimed_sizes(rewritten(spec_file, tmp_path / "many.pt2"),
                         {f"data/weights/weight_{i}": 0x7FFFFFF0 for i in range(3)})
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(spec_file.read_bytes()[:50_000])
    text = tmp_path / "text.pt2"
    text.write_text("not a zip\n")
    fifo = tmp_path / "fifo.pt2"
    os.mkfifo(fifo)
    cases = {big: "/data/weights/weight_4` claims 4,294,967,280 bytes; the limit is 2,147,483,648",
             many: "once inflated; the limit is 4,294,967,296", truncated: "not a readable zip",
             text: "not a readable zip", fifo: "is not a regular file"}
    for path, message in cases.items():
        result = cli("infer", path, tmp_path / "none.png")
        assert result.code == 2 and message in result.err, (path.name, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) <= 2


def test_an_entry_inflating_past_its_claimed_size_is_refused(spec_file, tmp_path):
    """A deflate stream holding more than its header claims is read only up to the claim."""
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(spec_file) as zin, zipfile.ZipFile(bomb, "w") as zout:
        for info in zin.infolist():
            tail = info.filename.split("/", 1)[1]
            data = b"{" * 20_000_000 if tail == "extra/netspec.json" else zin.read(info)
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    claimed_sizes(bomb, {"extra/netspec.json": 100})
    with pytest.raises(ModelFileError, match="netspec.json"):
        pt2.load(bomb)


def test_a_huge_size_argument_is_refused_before_anything_is_allocated(spec_file, tmp_path):
    def huge(program):
        flatten = next(n for n in _nodes(program) if n["target"] == "torch.ops.aten.flatten.using_ints")
        flatten.update(target="torch.ops.aten.expand.default")
        flatten["inputs"][1:] = [{"name": "size", "arg": {"as_ints": [65536, 65536, 65536]}, "kind": 1}]

    hostile = rewritten(spec_file, tmp_path / "huge.pt2", program_edit(huge))
    with pytest.raises(ModelFileError, match="passes the size .65536, 65536, 65536. to an operator"):
        pt2.load(hostile)


def test_a_symbolic_input_exports_dynamic_height_and_width(tmp_path):
    import netspec
    from tests.test_dynamic_export import SPEC

    (tmp_path / "tiny.yaml").write_text(SPEC)
    report = pt2.export(load_source(tmp_path / "tiny.yaml"), tmp_path / "tiny.pt2")
    assert any("parity verified at 32×32 and 48×64" in note for note in report.notes)
    model = pt2.load(tmp_path / "tiny.pt2")
    assert model.card.input_shape == [3, None, None] and model.card.input_constraints["H"]["period"] == 16
    for height, width in ((32, 32), (48, 64), (80, 32)):
        torch.manual_seed(0)  # the spec built at this size, seeded as load_source seeds it
        eager = netspec.build(netspec.load(tmp_path / "tiny.yaml", input=f"3x{height}x{width}")).eval()
        x = torch.randn(2, 3, height, width)
        with torch.no_grad():
            expected = eager(x).numpy()
        assert np.abs(model.run(x.numpy()) - expected).max() <= 1e-5
    with pytest.raises(ModelFileError, match="torch cannot run the program"):
        model.run(np.zeros((1, 3, 40, 40), np.float32))  # 40 is not a multiple of 16: torch's own check


STRIDED = """name: strided
input: [3, H, W]
layers:
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1}
  - relu
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1}
  - global_avgpool
  - flatten
  - linear: 5
"""


def test_dynamic_sizes_whose_inner_sizes_reach_1_export_from_the_least_traceable_size(tmp_path, cli):
    """check allows H, W ≥ 1 here, but torch.export cannot trace a range in which an inner size is 1:
    the .pt2 takes the sizes at which every inner size is ≥ 2 — after two stride-2 convs,
    (H − 1)//2 + 1 ≥ 3, so H ≥ 5 — and says so; its card makes infer resize smaller images."""
    import netspec

    spec = tmp_path / "strided.yaml"
    spec.write_text(STRIDED)
    assert "H ≥ 1" in cli("check", spec).out
    result = cli("export", spec, "--format", "pt2", "-o", tmp_path / "strided.pt2")
    assert result.code == 0, result.err
    assert "the .pt2 takes H ≥ 5; W ≥ 5 (check allows H ≥ 1; W ≥ 1)" in result.out
    model = pt2.load(tmp_path / "strided.pt2")
    assert (model.card.input_constraints["H"]["min"], model.card.input_constraints["W"]["min"]) == (5, 5)
    for height, width in ((5, 5), (7, 12), (64, 33)):
        torch.manual_seed(0)
        eager = netspec.build(netspec.load(spec, input=f"3x{height}x{width}")).eval()
        x = torch.randn(2, 3, height, width)
        with torch.no_grad():
            assert np.abs(model.run(x.numpy()) - eager(x).numpy()).max() <= 1e-5
    from PIL import Image

    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "small.png")
    shown = cli("infer", tmp_path / "strided.pt2", tmp_path / "small.png")
    assert shown.code == 0 and "resized to 5×5" in shown.out + shown.err
