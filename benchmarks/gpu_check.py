"""Device check: the CUDA and TensorRT paths of netspec's runtimes, run once on a machine with a GPU.

    .venv/bin/python benchmarks/gpu_check.py [--spec specs/torchvision/resnet18.yaml] [--out DIR]

Never part of the test suite (no test may depend on a GPU). On a GPU machine it:

1. exports the spec (seeded init weights) as fp32 ONNX, and with `--quantize fp16`;
2. opens each file on CUDA and on TensorRT (fp32, then `--trt-fp16`), timing the session start
   twice: the first TensorRT start builds the engine, the second must load it from the cache
   (netspec.exporters.providers.TensorRT), so it should be many times faster;
3. checks each GPU runtime's outputs against onnxruntime on the CPU (max |diff| and top-1 agreement);
4. times batch 1 and 32 on every runtime and on PyTorch eager (CPU and CUDA), in alternating
   blocks (netspec.exporters.bench._time), and prints latency ratios vs eager and vs the CPU.

Without a GPU it says so and exits 0. The figures go to docs/benchmarks.md with `nvidia-smi -L`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs/torchvision/resnet18.yaml"))
    parser.add_argument("--out", default=None, help="folder for the exported files (default: a temporary one)")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    from netspec.exporters.runtime import gpu_present

    if not gpu_present():
        print("no NVIDIA GPU here (no /dev/nvidia*): nothing to measure")
        return 0
    print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
    out = Path(args.out or tempfile.mkdtemp(prefix="netspec-gpu-"))
    files = export_files(Path(args.spec), out)
    runtimes = open_runtimes(files, out / "engines")
    check_outputs(runtimes)
    time_runtimes(runtimes, Path(args.spec), args.seconds)
    return 0


def export_files(spec: Path, out: Path) -> dict[str, Path]:
    files = {"fp32": out / "model.onnx", "fp16": out / "model-fp16.onnx"}
    for kind, path in files.items():
        command = [sys.executable, "-m", "netspec.cli", "export", str(spec), "--onnx", "-o", str(path)]
        if kind == "fp16":
            command += ["--quantize", "fp16"]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        print(f"export {kind}: rc {done.returncode}\n{done.stdout.strip()}\n{done.stderr.strip()[-2000:]}")
        if done.returncode != 0:
            files[kind] = None
    return {k: v for k, v in files.items() if v is not None}


def open_runtimes(files: dict[str, Path], engines: Path) -> dict[str, object]:
    """name → runtime; each GPU session opened twice, the start times printed."""
    from netspec.errors import NetspecError
    from netspec.exporters.runtime import OnnxModel

    runtimes = {"cpu fp32": OnnxModel(files["fp32"], "cpu", torch_in_process=True)}
    plans = [("cuda", "fp32", {}), ("tensorrt", "fp32", {}), ("tensorrt", "fp32", {"trt_fp16": True}),
             ("cuda", "fp16", {})]
    for provider, kind, options in plans:
        if kind not in files:
            continue
        name = f"{provider} {kind}" + (" trt-fp16" if options else "")
        starts = []
        for _ in range(2):
            began = time.perf_counter()
            try:
                model = OnnxModel(files[kind], provider, torch_in_process=True, trt_cache=str(engines), **options)
            except NetspecError as error:
                print(f"{name}: {error.format()}")
                break
            starts.append(time.perf_counter() - began)
        if len(starts) == 2:
            print(f"{name}: session start {starts[0]:.2f} s, then {starts[1]:.2f} s (provider {model.provider})")
            runtimes[name] = model
    return runtimes


def check_outputs(runtimes: dict) -> None:
    x = np.random.default_rng(0).standard_normal((8, *runtimes["cpu fp32"].card.input_shape), dtype=np.float32)
    reference = runtimes["cpu fp32"].run(x)
    for name, model in runtimes.items():
        got = model.run(x)
        agree = float((got.argmax(1) == reference.argmax(1)).mean()) * 100
        print(f"{name}: max |diff| vs cpu {np.abs(got - reference).max():.2e}, top-1 agreement {agree:.1f} %")


def time_runtimes(runtimes: dict, spec: Path, seconds: float) -> None:
    import torch

    import netspec
    from netspec.exporters.bench import _time, table

    torch.manual_seed(0)
    model = netspec.build(spec).eval()
    gpu_model = netspec.build(spec).eval().cuda()
    gpu_model.load_state_dict(model.state_dict())
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, *runtimes["cpu fp32"].card.input_shape),
                                                     dtype=np.float32)
        cpu_x, gpu_x = torch.from_numpy(x), torch.from_numpy(x).cuda()

        def eager_gpu():
            with torch.inference_mode():
                gpu_model(gpu_x).cpu()

        def eager_cpu():
            with torch.inference_mode():
                model(cpu_x)

        calls = {"pytorch eager": eager_cpu, "pytorch eager cuda": eager_gpu,
                 **{f"onnxruntime {n}": (lambda m=m: m.run(x)) for n, m in runtimes.items()}}
        print(table(_time(calls, batch, seconds)))
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
