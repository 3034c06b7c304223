"""Issue 12, item 5: the GPU runtimes are ready for a GPU this machine does not have.

TensorRT builds an engine per model (seconds to minutes); netspec caches it per model file,
GPU precision and user, so it is built once, and gives it an optimisation profile covering batch
sizes 1–256 so a new batch size does not rebuild it. Without a GPU the provider cannot start, so
these tests check the settings netspec hands onnxruntime, read from the real model file; the
device run that exercises them is benchmarks/gpu_check.py (docs/deployment.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import netspec.exporters.providers as providers
import netspec.exporters.runtime as runtime
from netspec.exporters.runtime import OnnxModel
from tests.conftest import SPECS


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """LeNet exported twice: a dynamic batch and a fixed batch of 4 (different files)."""
    from netspec.exporters.onnx import export_onnx
    from netspec.run import load_source

    folder = tmp_path_factory.mktemp("gpu")
    source = load_source(SPECS / "lenet.yaml")
    export_onnx(source, folder / "dynamic.onnx")
    export_onnx(source, folder / "fixed.onnx", batch=4)
    return folder / "dynamic.onnx", folder / "fixed.onnx"


@pytest.fixture
def captured(monkeypatch):
    """OnnxModel as on a GPU machine, its session opened on the CPU; the TensorRT settings it chose."""
    seen = {}

    def open_on_cpu(choice, make_session, tensorrt=None):
        seen["choice"], seen["tensorrt"] = choice, tensorrt
        return make_session(["CPUExecutionProvider"]), []

    monkeypatch.setattr(runtime, "gpu_present", lambda: True)
    monkeypatch.setattr(runtime, "open_session", open_on_cpu)
    return seen


def test_the_engine_cache_is_keyed_by_the_model_file_and_precision(models, captured):
    dynamic, fixed = models
    OnnxModel(dynamic, "tensorrt")
    fp32 = captured["tensorrt"]
    assert fp32.model_sha256 == hashlib.sha256(dynamic.read_bytes()).hexdigest()
    home_cache = Path.home() / ".cache" / "netspec" / "tensorrt"
    assert Path(fp32.cache_folder()) == home_cache / fp32.model_sha256[:32] / "fp32"
    assert fp32.options()["trt_engine_cache_enable"] == "True" and fp32.options()["trt_fp16_enable"] == "False"

    OnnxModel(dynamic, "auto", trt_fp16=True)
    fp16 = captured["tensorrt"]
    assert fp16.options()["trt_fp16_enable"] == "True"
    assert Path(fp16.cache_folder()).parent == Path(fp32.cache_folder()).parent  # same model
    assert fp16.cache_folder() != fp32.cache_folder()  # an fp16 engine never serves an fp32 request

    OnnxModel(fixed, "tensorrt")
    assert Path(captured["tensorrt"].cache_folder()).parent != Path(fp32.cache_folder()).parent


def test_a_dynamic_batch_gets_a_profile_for_every_batch_size_a_fixed_one_none(models, captured):
    dynamic, fixed = models
    OnnxModel(dynamic, "tensorrt")
    options = captured["tensorrt"].options()
    assert options["trt_profile_min_shapes"] == "input:1x1x28x28"
    assert options["trt_profile_opt_shapes"] == "input:32x1x28x28"
    assert options["trt_profile_max_shapes"] == "input:256x1x28x28"
    OnnxModel(fixed, "tensorrt")
    assert not any(key.startswith("trt_profile") for key in captured["tensorrt"].options())


def test_a_chosen_cache_folder_is_used(models, captured, tmp_path):
    OnnxModel(models[0], "tensorrt", trt_cache=str(tmp_path / "engines"))
    assert captured["tensorrt"].cache_folder() == str(tmp_path / "engines" / "fp32")


def test_no_tensorrt_settings_where_tensorrt_cannot_be_chosen(models, captured, monkeypatch):
    OnnxModel(models[0], "cuda")
    assert captured["tensorrt"] is None
    OnnxModel(models[0], "cpu")
    assert captured["tensorrt"] is None
    monkeypatch.setattr(runtime, "gpu_present", lambda: False)
    OnnxModel(models[0], "auto")
    assert captured["tensorrt"] is None


def test_tensorrt_is_asked_for_first_with_its_settings_then_cuda_then_cpu(monkeypatch, tmp_path):
    import onnxruntime as ort

    monkeypatch.setattr(providers, "gpu_present", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    settings = providers.TensorRT("ab" * 32, fp16=True, cache=str(tmp_path / "c"))
    wanted, notes = providers.choose_providers("tensorrt", settings)
    assert [providers.provider_name(w) for w in wanted] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert wanted[0][1] == settings.options() and (tmp_path / "c" / "fp16").is_dir()
    assert wanted[1][1] == {"cudnn_conv_algo_search": "HEURISTIC"}


def test_the_tensorrt_flags_reach_the_session_and_are_refused_for_a_pt2_file(models, captured, cli, tmp_path):
    import numpy as np
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    result = cli("infer", models[0], image, "--trt-fp16", "--trt-cache", tmp_path / "engines", "--json")
    assert result.code == 0, result.err
    assert captured["tensorrt"].fp16 and captured["tensorrt"].cache_folder() == str(tmp_path / "engines" / "fp16")

    assert cli("export", SPECS / "lenet.yaml", "--format", "pt2", "-o", tmp_path / "lenet.pt2").code == 0
    refused = cli("infer", tmp_path / "lenet.pt2", image, "--trt-fp16")
    assert refused.code == 2 and "error: --trt-fp16: is for ONNX models run by onnxruntime" in refused.err
    assert "Traceback" not in refused.err
