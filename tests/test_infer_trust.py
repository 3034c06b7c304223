"""Issue 9, item 7: `netspec infer` takes what a user would give it — folders, globs, a run
directory as the model, arrays of another size — and runs on the provider it says, or refuses.

The last tests are about the pip-installed CUDA libraries: onnxruntime's CUDA provider links
against cuBLAS/cuRAND/cudart, which pip puts where the dynamic loader does not look. On this
GPU-less machine the provider can never start, but the reason must be the missing driver
(libcuda.so.1), never a CUDA library netspec should have found.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from tests.conftest import ROOT, lenet_digits_run

CUDA = "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run of lenet (1×28×28 input, 10 classes) on digits, not exported yet."""
    return lenet_digits_run(tmp_path_factory, "infer", 1)


@pytest.fixture(scope="module")
def model(run_dir, tmp_path_factory):
    """The run exported outside the run directory (tests that need it exported inside copy it)."""
    from netspec.exporters.onnx import export_onnx, load_source

    path = tmp_path_factory.mktemp("model") / "lenet5.onnx"
    export_onnx(load_source(run_dir), path)
    return path


def digit(path, value=0):
    """An 8×8 grayscale PNG (the model resizes it to 28×28)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def inputs_of(result) -> list[str]:
    return [p["input"] for p in json.loads(result.out)]


# -- inputs: folders and globs -----------------------------------------------------------------

def test_a_folder_is_searched_recursively_in_sorted_order(model, tmp_path, cli):
    folder = tmp_path / "digits"
    expected = [digit(folder / "b" / "c" / "two.png"), digit(folder / "a" / "one.png"), digit(folder / "Z.PNG")]
    np.save(folder / "b" / "three.npy", np.zeros((8, 8), np.uint8))
    expected.append(folder / "b" / "three.npy")
    digit(folder / ".hidden" / "skipped.png")  # hidden entries are not inputs, as in training folders
    (folder / "notes.txt").write_text("not an input")
    result = cli("infer", model, folder, "--json")
    assert result.code == 0, result.err
    assert inputs_of(result) == sorted(map(str, expected), key=lambda p: p.replace(os.sep, "/"))


def test_a_quoted_glob_is_expanded_by_netspec(model, tmp_path, cli):
    pngs = [digit(tmp_path / f"d{i}.png") for i in (3, 1, 2)]
    digit(tmp_path / "sub" / "d9.png")  # `*` does not descend into folders
    result = cli("infer", model, str(tmp_path / "*.png"), "--json")
    assert result.code == 0, result.err
    assert inputs_of(result) == sorted(map(str, pngs))


def test_each_bad_input_has_its_own_line_and_the_good_ones_still_print(model, tmp_path, cli):
    good = digit(tmp_path / "good.png")
    (tmp_path / "empty").mkdir()
    missing, no_match = tmp_path / "absent.png", str(tmp_path / "*.jpeg")
    result = cli("infer", model, good, tmp_path / "empty", missing, no_match, good, "--json")
    assert result.code == 2
    assert inputs_of(result) == [str(good), str(good)]
    errors = [line for line in result.err.splitlines() if ": error:" in line]
    assert len(errors) == 3 and "Traceback" not in result.err
    assert f"{tmp_path / 'empty'}: error: a folder with no images or .npy arrays" in result.err
    assert f"{missing}: error: no such file" in result.err
    assert f"{no_match}: error: no such file, and no file matches it as a pattern" in result.err


# -- the model: a run directory ----------------------------------------------------------------

def test_a_run_directory_as_the_model(run_dir, tmp_path, cli):
    png = digit(tmp_path / "x.png", 200)
    unexported = cli("infer", run_dir, png)
    assert unexported.code == 2 and "Traceback" not in unexported.err
    assert "is a run directory with no exported model in it" in unexported.err
    assert f"netspec export {run_dir} --onnx" in unexported.err

    exported = cli("export", run_dir, "--onnx")
    assert exported.code == 0, exported.err
    by_run = cli("infer", run_dir, png, "--json")
    by_file = cli("infer", run_dir / "lenet5.onnx", png, "--json")
    assert by_run.code == 0, by_run.err
    assert by_run.out == by_file.out and f"note: model: {run_dir / 'lenet5.onnx'}" in by_run.err
    assert "exported before" not in by_run.err

    # Weights written after the export (a resumed or extended run): the file is not the run's model any more.
    later = (run_dir / "lenet5.onnx").stat().st_mtime_ns + 10**9
    os.utime(run_dir / "best.safetensors", ns=(later, later))
    stale = cli("infer", run_dir, png)
    assert stale.code == 0 and "lenet5.onnx was exported before the run's best.safetensors" in stale.err

    (run_dir / "fixed.onnx").write_bytes((run_dir / "lenet5.onnx").read_bytes())
    try:
        two = cli("infer", run_dir, png)
        assert two.code == 2 and "holds 2 .onnx files (fixed.onnx, lenet5.onnx)" in two.err
    finally:
        (run_dir / "fixed.onnx").unlink()


# -- inputs: arrays of another size --------------------------------------------------------------

def reference_probs(model_path, rgb_hwc: np.ndarray) -> np.ndarray:
    """What the exported model gives for an RGB image, computed from the file's own metadata
    with PIL and onnxruntime directly: ITU-R 601 grayscale, bilinear resize, (x − mean) / std."""
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(model_path)).metadata_props
            if p.key in ("netspec.input_shape", "netspec.mean", "netspec.std")}
    channels, height, width = meta["netspec.input_shape"]
    gray = Image.fromarray(rgb_hwc, "RGB").convert("L").resize((width, height), Image.Resampling.BILINEAR)
    x = (np.asarray(gray, np.float32)[None, None] / 255 - meta["netspec.mean"][0]) / meta["netspec.std"][0]
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0][0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_an_rgb_32x32_npy_for_a_gray_28x28_model_converts_like_an_image(model, tmp_path, cli):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", rgb.transpose(2, 0, 1))  # the 3×32×32
    np.save(tmp_path / "f32.npy", rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    Image.fromarray(rgb).save(tmp_path / "same.png")
    result = cli("infer", model, tmp_path / "u8.npy", tmp_path / "f32.npy", tmp_path / "same.png",
                 "--json", "--top-k", "10")
    assert result.code == 0, result.err
    expected = reference_probs(model, rgb)
    for prediction in json.loads(result.out):
        probs = np.zeros(10)
        for entry in prediction["top_k"]:
            probs[entry["index"]] = entry["prob"]
        np.testing.assert_allclose(probs, expected, atol=1e-5, err_msg=prediction["input"])


# -- providers ----------------------------------------------------------------------------------

def _no_gpu() -> bool:
    from netspec.exporters.providers import gpu_present

    return not gpu_present()


@pytest.mark.skipif(not _no_gpu(), reason="the refusal is for machines without a GPU")
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_an_explicit_gpu_provider_without_a_gpu_is_an_error(model, tmp_path, cli, provider):
    result = cli("infer", model, digit(tmp_path / "x.png"), "--provider", provider, "--json")
    assert result.code == 2 and result.out == "" and "Traceback" not in result.err
    assert f"error: --provider: `{provider}` needs an NVIDIA GPU and there is none here" in result.err


@pytest.mark.skipif(not _no_gpu(), reason="the fallback note is for machines without a GPU")
def test_auto_falls_back_to_the_cpu_with_a_note(model, tmp_path, cli):
    result = cli("infer", model, digit(tmp_path / "x.png"))
    assert result.code == 0, result.err
    assert "note: no GPU found: running on CPU" in result.err and "provider: CPUExecutionProvider" in result.err


def test_a_provider_this_onnxruntime_lacks_is_an_error(model, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    result = cli("infer", model, digit(tmp_path / "x.png"), "--provider", "cuda")
    assert result.code == 2 and "`cuda` is not built into this onnxruntime" in result.err
    assert cli("infer", model, digit(tmp_path / "x.png"), "--provider", "gpu").code == 2


# -- the pip-installed CUDA libraries -------------------------------------------------------------

def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False


needs_a_gpu_less_cuda_build = pytest.mark.skipif(
    CUDA not in ort.get_available_providers() or _loadable("libcuda.so.1") or not os.path.exists("/proc/self/maps"),
    reason="needs onnxruntime with the CUDA provider, no NVIDIA driver, and Linux")

# Runs in a fresh interpreter, as `netspec infer` does: no torch (which would load cuBLAS itself).
PROBE = textwrap.dedent("""
    import json, sys
    import onnxruntime as ort
    import netspec.exporters.providers as providers

    mode, model = sys.argv[1], sys.argv[2]
    result = {}
    if mode == "netspec":  # netspec's own path, its no-GPU guard bypassed
        from netspec.exporters.runtime import OnnxModel
        from netspec.errors import NetspecError
        providers.gpu_present = lambda: True
        try:
            result["provider"] = OnnxModel(model, "cuda").provider
        except NetspecError as error:
            result["error"] = error.format()
    else:  # onnxruntime itself, logging verbosely to stderr, after netspec's preload or without it
        if mode == "preloaded":
            providers.preload_cuda_libraries()
        ort.set_default_logger_severity(0)
        result["provider"] = ort.InferenceSession(model, providers=["CUDAExecutionProvider"]).get_providers()[0]
        if mode == "bare":  # whether cuBLAS is on the loader's own path here (a system-wide CUDA)
            import ctypes
            try:
                ctypes.CDLL("libcublasLt.so.13")
                result["cublas_on_loader_path"] = True
            except OSError:
                result["cublas_on_loader_path"] = False
    result["torch"] = "torch" in sys.modules
    result["loaded"] = sorted({line.split("/")[-1].strip() for line in open("/proc/self/maps") if "/nvidia/" in line})
    print(json.dumps(result))
""")


def probe(mode: str, model) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(model)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def load_errors(stderr: str) -> list[str]:
    """What the dynamic loader said in onnxruntime's "Failed to load library … with error: …" lines."""
    return [line.split("with error:", 1)[1].strip() for line in stderr.splitlines()
            if "Failed to load library" in line and "with error:" in line]


@needs_a_gpu_less_cuda_build
def test_the_cuda_provider_fails_only_for_the_missing_driver(model):
    # Without netspec's preload the loader stops at the first pip-installed library (the premise),
    # unless this machine has cuBLAS on the loader's own path.
    bare, bare_log = probe("bare", model)
    assert bare["provider"] == "CPUExecutionProvider" and not bare["torch"]
    assert bare["cublas_on_loader_path"] or any("libcublas" in e for e in load_errors(bare_log)), bare_log[-2000:]

    preloaded, log = probe("preloaded", model)
    errors = load_errors(log)
    assert errors and all(error.startswith("libcuda.so.1:") for error in errors), log[-2000:]
    assert not any(name in error for error in errors for name in ("libcublas", "libcudnn", "libcudart", "libcurand"))
    assert not preloaded["torch"]
    loaded = " ".join(preloaded["loaded"])
    for library in ("libcublasLt.so", "libcublas.so", "libcudart.so", "libcurand.so", "libcudnn.so"):
        assert library in loaded, preloaded["loaded"]

    # netspec's own session: the explicit request is refused with the loader's reason, exit-2 style.
    netspec, _ = probe("netspec", model)
    assert not netspec["torch"] and "provider" not in netspec
    assert netspec["error"].startswith("error: --provider: `cuda`: onnxruntime could not start CUDAExecutionProvider")
    assert "libcuda.so.1" in netspec["error"] and "libcublas" not in netspec["error"]
