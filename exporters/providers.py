"""Which onnxruntime execution provider runs a model, and making sure it is the one that was asked for.

onnxruntime never fails when a provider cannot start: it logs to the process's stderr, skips the
provider and runs the graph on the next one (its Python layer even retries on the CPU after an
error, printing to stdout). netspec therefore checks the session it got: an explicitly requested
provider that is not running is an error naming `--provider` with onnxruntime's own reason;
`auto` takes the next one and says why in a note.

The GPU providers link against cuBLAS, cuRAND, cudart (and cuDNN, loaded later). pip installs
them under site-packages/nvidia, where the dynamic loader does not look; `import torch` would
load them as a side effect, but `netspec infer` never imports torch, so they are loaded with
`onnxruntime.preload_dlls()` before a GPU session is created.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from netspec.errors import OptionError, printable

PREFERENCE = ("tensorrt", "cuda", "cpu")
PROVIDER_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "cpu": "CPUExecutionProvider"}
GPU_PROVIDERS = (PROVIDER_NAMES["tensorrt"], PROVIDER_NAMES["cuda"])
CPU = PROVIDER_NAMES["cpu"]
# How onnxruntime reports a provider library that the dynamic loader could not load
# (provider_bridge_ort.cc): "Failed to load library …/libonnxruntime_providers_cuda.so with error: …".
LOAD_FAILURE = re.compile(r"Failed to load library \S*libonnxruntime_providers_(\w+)\.\w+ with error: (.*)")
SOURCE_LOCATION = re.compile(r"^\S+\.(?:cc|cpp|h):\d+ [^(]*\([^)]*\) ")  # "/…/x.cc:729 void f(A&) "
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # onnxruntime colours its log lines


def gpu_present() -> bool:
    """An NVIDIA device node: without one, asking ORT for CUDA only produces loader noise."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


@dataclass(frozen=True)
class TensorRT:
    """How the TensorRT provider builds its engine for one model.

    Building an engine takes seconds to minutes, so it is cached and built once per model, GPU
    and precision. The cache is not beside the model by default: a model folder may come from
    someone else, and a TensorRT engine is a binary that TensorRT deserialises without any
    guarantee against a crafted one. netspec's own cache (~/.cache/netspec/tensorrt) keyed by the
    model file's SHA-256 is written only by this user; `--trt-cache DIR` puts it elsewhere (beside
    the model, say) when the user trusts that folder."""

    model_sha256: str = ""
    fp16: bool = False  # --trt-fp16: TensorRT may run layers in half precision
    cache: str | None = None  # --trt-cache DIR
    # (min, opt, max) input shapes with the batch, for an engine that serves every batch size
    # instead of being rebuilt for each new one; None when the graph's sizes are open.
    profile: tuple | None = None

    def cache_folder(self) -> str:
        base = self.cache or os.path.join(os.path.expanduser("~/.cache/netspec/tensorrt"), self.model_sha256[:32])
        return os.path.join(base, "fp16" if self.fp16 else "fp32")

    def options(self) -> dict:
        options = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": self.cache_folder(),
                   "trt_timing_cache_enable": "True", "trt_timing_cache_path": self.cache_folder(),
                   "trt_fp16_enable": "True" if self.fp16 else "False"}
        if self.profile:
            for key, shape in zip(("min", "opt", "max"), self.profile):
                options[f"trt_profile_{key}_shapes"] = "input:" + "x".join(map(str, shape))
        return options


TRT_PROFILE_BATCHES = (1, 32, 256)  # batch sizes of the engine's optimisation profile: min, opt, max


def tensorrt_profile(input_shape: list) -> tuple | None:
    """The optimisation profile for a graph with a dynamic batch and fixed C×H×W (None otherwise)."""
    if not input_shape or any(not isinstance(d, int) for d in input_shape):
        return None
    return tuple((batch, *input_shape) for batch in TRT_PROFILE_BATCHES)


def choose_providers(choice: str, tensorrt: TensorRT | None = None) -> tuple[list, list[str]]:
    """Providers to ask onnxruntime for, best first, and notes on what `auto` left out.
    An explicitly requested GPU provider that cannot run here is a OptionError naming `--provider`."""
    import onnxruntime as ort

    if choice not in ("auto", *PREFERENCE):
        raise OptionError.at(None, "--provider", f"unknown provider `{printable(choice[:40])}`",
                           "one of auto, tensorrt, cuda, cpu")
    available, gpu = set(ort.get_available_providers()), gpu_present()
    if choice != "auto" and choice != "cpu":
        full = PROVIDER_NAMES[choice]
        if full not in available:
            raise OptionError.at(None, "--provider", f"`{choice}` is not built into this onnxruntime "
                               f"(it has {', '.join(sorted(available))})",
                               "install onnxruntime-gpu, or use --provider auto or cpu")
        if not gpu:
            raise OptionError.at(None, "--provider", f"`{choice}` needs an NVIDIA GPU and there is none here "
                               "(no /dev/nvidia* device)", "--provider auto runs on the best one present, here the CPU")
    # TensorRT hands the nodes it cannot take to CUDA, and either GPU provider hands the rest to the CPU.
    order = {"auto": PREFERENCE, "tensorrt": PREFERENCE, "cuda": ("cuda", "cpu"), "cpu": ("cpu",)}[choice]
    wanted = [_with_options(name, tensorrt or TensorRT()) for name in order
              if name == "cpu" or (gpu and PROVIDER_NAMES[name] in available)]
    notes = ["no GPU found: running on CPU"] if choice == "auto" and not gpu else []
    return wanted, notes


def _with_options(name: str, tensorrt: TensorRT):
    full = PROVIDER_NAMES[name]
    if name == "cuda":
        return (full, {"cudnn_conv_algo_search": "HEURISTIC"})
    if name == "tensorrt":
        try:
            os.makedirs(tensorrt.cache_folder(), exist_ok=True)
        except OSError as e:
            raise OptionError.at(None, "--trt-cache", f"cannot create the TensorRT engine cache "
                                 f"{printable(tensorrt.cache_folder())} ({e.strerror or e})") from None
        return (full, tensorrt.options())
    return full


def provider_name(entry) -> str:
    return entry if isinstance(entry, str) else entry[0]


def open_session(choice: str, make_session, tensorrt: TensorRT | None = None) -> tuple[object, list[str]]:
    """`make_session(providers, **kwargs)` → InferenceSession on the best provider `choice` allows,
    and notes. A GPU session is created with the CUDA libraries preloaded, onnxruntime's own CPU
    fallback off, and its stderr captured for the reason a provider did not start."""
    wanted, notes = choose_providers(choice, tensorrt)
    if provider_name(wanted[0]) == CPU:
        return make_session(wanted), notes
    notes += preload_cuda_libraries()
    while True:
        first = provider_name(wanted[0])
        with native_stderr() as log:
            try:
                session = make_session(wanted, enable_fallback=0)
            except Exception as error:  # noqa: BLE001 — onnxruntime raises its own Fail/EPFail/… types
                session, reason = None, _first_line(error)
                if first == CPU:
                    raise
        _pass_on(log.text)
        if session is None:  # the provider (or the model) refused outright; the loader says why more exactly
            reason = load_failures(log.text).get(first, reason)
            if choice != "auto":
                make_session([CPU])  # raises if the model itself is at fault: then that is the error
                raise _not_started(choice, first, reason)
            notes.append(f"{first} could not start ({printable(reason)[:300]}): trying the next provider")
            wanted = wanted[1:]
            continue
        running, names = session.get_providers()[0], [provider_name(w) for w in wanted]
        failures = load_failures(log.text)
        for skipped in names[:names.index(running) if running in names else -1]:
            reason = failures.get(skipped, "onnxruntime skipped it without saying why")
            if choice != "auto":
                raise _not_started(choice, skipped, reason)
            notes.append(f"{skipped} could not start ({printable(reason)[:300]}): running on {running}")
        return session, notes


def _not_started(choice: str, provider: str, reason: str) -> OptionError:
    return OptionError.at(None, "--provider", f"`{choice}`: onnxruntime could not start {provider} "
                        f"({printable(reason)[:300]})", "--provider auto falls back to the next provider")


def _first_line(error: Exception) -> str:
    """onnxruntime's message without the C++ source location and signature it starts with."""
    text = str(error).strip()
    return SOURCE_LOCATION.sub("", text.splitlines()[0]) if text else type(error).__name__


def load_failures(log: str) -> dict[str, str]:
    """Provider name → the loader's error, from onnxruntime's log lines."""
    libraries = {"cuda": PROVIDER_NAMES["cuda"], "tensorrt": PROVIDER_NAMES["tensorrt"]}
    failures = {}
    for line in ANSI_ESCAPE.sub("", log).splitlines():
        match = LOAD_FAILURE.search(line)
        if match and match.group(1) in libraries:
            failures[libraries[match.group(1)]] = match.group(2).strip()
    return failures


def _pass_on(log: str) -> None:
    """onnxruntime's log lines other than the load failures netspec reports itself, escaped."""
    for line in ANSI_ESCAPE.sub("", log).splitlines():
        if line.strip() and not LOAD_FAILURE.search(line):
            print(printable(line)[:1000], file=sys.stderr)


@functools.cache
def preload_cuda_libraries() -> tuple[str, ...]:
    """Load the pip-installed CUDA and cuDNN libraries into the process (once), so that the
    GPU providers' own libraries resolve them; notes for any that could not be loaded.
    preload_dlls reports failures with print(): caught here, as stdout may be JSON."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls"):  # before onnxruntime 1.21: the loader's paths only
        return ("this onnxruntime cannot preload the pip-installed CUDA libraries (1.21 or newer can)",)
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        ort.preload_dlls()
    return tuple(f"CUDA libraries: {printable(line)[:300]}" for line in said.getvalue().splitlines() if line.strip())


class native_stderr(contextlib.AbstractContextManager):
    """Captures what native code writes to file descriptor 2 (onnxruntime logs to std::cerr,
    which Python's sys.stderr does not see); `.text` afterwards."""

    def __enter__(self):
        sys.stderr.flush()
        self.text, self._file = "", tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read(1_000_000).decode("utf-8", "replace")
        self._file.close()
        return False
