"""Issue 12, point 3: a spec with `input: [3, H, W]` exports once with H and W as dynamic axes,
carries the sizes it allows in its model card, and `netspec infer` keeps each image's size when the
model allows it (and says why when it resizes)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import netspec
from netspec.errors import ModelFileError
from netspec.exporters.dynamic import MAX_KEPT_PIXELS, DynamicInput, SizeRule
from netspec.exporters.onnx import export_onnx, load_source
from netspec.modelcard import check_input_constraints
from tests.conftest import SPECS

# Four stages that halve H and W twice over (a 2×2 max-pool and a stride-2 conv, added): the two
# agree only for even sizes, so H must be a multiple of 2^4 = 16; the last 2×2 conv needs H/16 ≥ 2.
SPEC = """
name: tiny_dynamic
input: [3, H, W]
blocks:
  halve:
    layers:
      - parallel:
          paths:
            - [maxpool: 2]
            - [conv: {out: 4, kernel: 3, stride: 2, padding: 1}]
          merge: add
      - relu
layers:
  - conv: {out: 4, kernel: 3, padding: 1}
  - halve
  - halve
  - halve
  - halve
  - conv: {out: 8, kernel: 2}
  - global_avgpool
  - flatten
  - linear: 10
"""
RULES = {"H": {"dims": [1], "min": 32, "period": 16, "residues": [0]},
         "W": {"dims": [2], "min": 32, "period": 16, "residues": [0]}}


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("dynamic") / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def exported(spec_path):
    out = spec_path.parent / "tiny.onnx"
    report = export_onnx(load_source(spec_path), out)
    return out, report


def torch_model(spec_path, height: int, width: int):
    """The spec built at one concrete size, seeded as `load_source` seeds it (seed 0)."""
    torch.manual_seed(0)
    return netspec.build(netspec.load(spec_path, input=f"3x{height}x{width}")).eval()


def test_one_file_with_dynamic_batch_height_and_width(exported):
    path, report = exported
    assert ort.InferenceSession(str(path)).get_inputs()[0].shape == ["batch", 3, "H", "W"]
    assert any("parity verified at 32×32 and 48×64" in note for note in report.notes)
    assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["netspec.input_shape"]) == [3, None, None]
    assert json.loads(meta["netspec.input_constraints"]) == RULES


@pytest.mark.parametrize("height, width", [(32, 32), (48, 64), (80, 48)])
def test_the_file_matches_pytorch_built_at_each_size(exported, spec_path, height, width):
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch_model(spec_path, height, width)(x).numpy()
    actual = ort.InferenceSession(str(exported[0])).run(None, {"input": x.numpy()})[0]
    assert np.abs(actual - expected).max() <= 1e-4


def png(path, height: int, width: int, seed: int):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def torch_probs(spec_path, image: Image.Image) -> np.ndarray:
    """Softmax of the PyTorch model on the image's pixels / 255 (a spec's card does not normalise)."""
    x = torch.from_numpy(np.asarray(image, np.float32).transpose(2, 0, 1)[None] / 255)
    with torch.no_grad():
        return torch.softmax(torch_model(spec_path, *x.shape[2:])(x), 1)[0].numpy()


def test_infer_keeps_allowed_sizes_and_resizes_the_rest_with_a_note(exported, spec_path, tmp_path, cli):
    files = [png(tmp_path / "wide.png", 48, 64, 0), png(tmp_path / "small.png", 32, 32, 1),
             png(tmp_path / "tiny.png", 20, 20, 2), png(tmp_path / "wide2.png", 48, 64, 3)]
    result = cli("infer", exported[0], *files, "--json", "--top-k", "10")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [r["input"] for r in rows] == [str(f) for f in files]  # input order, though sizes were grouped
    for row, file in zip(rows, files):
        image = Image.open(file)
        if file.name == "tiny.png":
            assert row["note"] == f"{file} is 20×20 (H×W); the model needs H ≥ 32 and W ≥ 32: resized to 32×32"
            image = image.resize((32, 32), Image.Resampling.BILINEAR)
        else:
            assert "note" not in row
        expected = torch_probs(spec_path, image)
        got = np.zeros(10)
        for entry in row["top_k"]:
            got[entry["index"]] = entry["prob"]
        assert np.abs(got - expected).max() <= 1e-5, file.name
    table = cli("infer", exported[0], files[2])
    assert "note: " in table.err and "resized to 32×32" in table.err  # notes beside the table, not in it


@pytest.mark.parametrize("field, value, message", [
    ("netspec.input_constraints", '{"H": {"dims": [1], "min": 32, "period": 16, "residues": [16]}}',
     "`residues` must be distinct sorted integers 0..15"),
    ("netspec.input_constraints", json.dumps({"H": RULES["H"], "W": {**RULES["W"], "min": "32"}}),
     "`min` must be an integer"),
    ("netspec.input_constraints", json.dumps({"H": RULES["H"]}), "rules axes [1], the open axes"),
    ("netspec.input_constraints", json.dumps({"H": RULES["H"], "W": {**RULES["W"], "dims": [1]}}),
     "rules axes [1, 1]"),
    ("netspec.input_constraints", json.dumps({"H": RULES["H"], "W": {**RULES["W"], "period": 10**9}}),
     "`period` must be an integer 1..4,096"),
    ("netspec.input_constraints", None, "is missing, and the input 3×?×? has open sizes"),
    ("netspec.input_shape", "[null, null, null]", "expected [C, H, W]"),
])
def test_a_tampered_constraint_record_is_refused_by_infer(exported, tmp_path, cli, field, value, message):
    model = onnx.load(str(exported[0]))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != field]
    del model.metadata_props[:]
    for key, text in kept + ([(field, value)] if value is not None else []):
        model.metadata_props.add(key=key, value=text)
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    result = cli("infer", path, png(tmp_path / "a.png", 32, 32, 0))
    assert result.code == 2 and f"metadata `{field}`" in result.err and message in result.err, result.err
    assert "Traceback" not in result.err


def test_a_spec_whose_linear_depends_on_the_size_is_refused_naming_the_layer(tmp_path, cli):
    result = cli("export", SPECS / "lenet.yaml", "--onnx", "--input", "1xHxW", "-o", tmp_path / "lenet.onnx")
    assert result.code == 2
    assert "layers[7] linear: its weights depend on H, W" in result.err and "--input 1x" in result.err
    assert list(tmp_path.iterdir()) == []


def test_the_nearest_allowed_size():
    rule = SizeRule("H", (1,), 32, 16, (0,))
    assert [rule.nearest(n) for n in (1, 31, 32, 39, 40, 41, 47, 48)] == [32, 32, 32, 32, 48, 48, 48, 48]
    odd = SizeRule("W", (2,), 21, 4, (1, 2))  # 21, 22, 25, 26, 29, ...
    assert [odd.nearest(n) for n in (20, 23, 24, 27, 28)] == [21, 22, 25, 26, 29]
    dynamic = DynamicInput((3, None, None), (rule, SizeRule("W", (2,), 32, 16, (0,))))
    assert dynamic.fit(48, 64) == (48, 64, None)
    assert dynamic.fit(40, 64) == (48, 64, "the model needs H mod 16 = 0")
    height, width, why = dynamic.fit(3000, 4000)  # bounded, and still allowed sizes
    assert height * width <= MAX_KEPT_PIXELS and height % 16 == 0 and width % 16 == 0 and width > height
    assert why.startswith(f"infer runs at most {MAX_KEPT_PIXELS:,} pixels")
    square = DynamicInput((3, None, None), (SizeRule("S", (1, 2), 32, 16, (0,)),))  # `input: [3, S, S]`
    assert square.fit(40, 50) == (48, 48, "the model needs H = W") and square.fit(64, 64) == (64, 64, None)


def test_a_record_is_checked_against_the_open_axes():
    assert check_input_constraints(RULES, [3, None, None]) is None
    assert "no open sizes" in check_input_constraints(RULES, [3, 32, 32])
    assert "is not a size name" in check_input_constraints({"1; rm": RULES["H"], "W": RULES["W"]}, [3, None, None])
    too_far = {**RULES, "H": {"dims": [1], "min": 16384, "period": 4096, "residues": [4095]}}
    assert "allows no size up to 16,384" in check_input_constraints(too_far, [3, None, None])
    with pytest.raises(ModelFileError):
        from netspec.modelcard import ModelCard

        ModelCard.from_export_metadata({"netspec.input_shape": "[3, null, 32]"}, [3, None, 32], 10)


CEIL_SPEC = """
name: ceil_pools
input: [3, H, W]
layers:
  - conv: {out: 4, kernel: 3}
  - maxpool: {kernel: 3, stride: 2, ceil_mode: true}
  - maxpool: {kernel: 3, stride: 1, padding: 1, ceil_mode: true}
  - conv: {out: 4, kernel: 3}
  - global_avgpool
  - flatten
  - linear: 5
"""


def test_ceil_mode_pools_keep_torch_sizes_at_odd_sizes(tmp_path):
    spec = tmp_path / "ceil.yaml"
    spec.write_text(CEIL_SPEC)
    export_onnx(load_source(spec), tmp_path / "ceil.onnx")
    session = ort.InferenceSession(str(tmp_path / "ceil.onnx"))
    for height, width in [(33, 47), (34, 35), (61, 40)]:  # where a ceil pool's last window overhangs, or not
        x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            expected = torch_model(spec, height, width)(x).numpy()
        assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() <= 1e-4


def test_a_ceil_mode_pool_onnx_rounds_differently_is_refused(tmp_path, cli):
    spec = tmp_path / "padded.yaml"
    spec.write_text(CEIL_SPEC.replace("{kernel: 3, stride: 2, ceil_mode: true}",
                                      "{kernel: 3, stride: 2, padding: 1, ceil_mode: true}"))
    result = cli("export", spec, "--onnx", "-o", tmp_path / "padded.onnx")
    assert result.code == 2 and "ceil_mode pool rounds its output size differently" in result.err, result.err
    assert "padded.onnx" not in [p.name for p in tmp_path.iterdir()]
