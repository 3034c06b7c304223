"""`netspec export SPEC|RUN_DIR --onnx`: one self-contained ONNX file that answers like PyTorch.

torch 2.14's exporter (dynamo) is used with `dynamic_shapes` in the positional tuple form and
`external_data=False`, so a model under 2 GB is one file; above that, a `.onnx` + `.onnx.data`
pair that references the data file by its final name (we export into a scratch directory
beside the target under the final names, then move both). The file is checked with
`onnx.checker.check_model(full_check=True)`, then onnxruntime's outputs are compared with
PyTorch's on random inputs and, for a run, on real validation samples; if they disagree the file
is not kept.

Opsets, and the conversion below 18: netspec.exporters.opset.

ceil_mode pools are exported through `netspec.exporters.ceil_pool`, which gives PyTorch's output size on
any runtime; see there.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import netspec
from netspec.errors import ExportError, NetspecError, OptionError, printable
from netspec.exporters import DEFAULT_CALIBRATION
from netspec.exporters.ceil_pool import lowered_ceil_pools
from netspec.exporters.dynamic import DIMENSION_HINT, dynamic_input, native_ceil_pools
from netspec.exporters.opset import DEFAULT_OPSET, EXPORTER_OPSET, OPSET_HINT, check_opset, convert_down, file_opset
from netspec.exporters.parity import PARITY_TOLERANCE, Agreement, Measure, ParityFigures
from netspec.modelcard import input_size_problem
from netspec.run import Source, load_source  # noqa: F401 (load_source: the format-neutral loader, re-exported)

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB; leave room for the graph
REAL_SAMPLES = 256


@dataclass
class ExportReport(ParityFigures):
    COMPARED = "onnxruntime − torch"

    path: Path
    bytes: int
    opset: int  # read back from the written file's opset_import
    batch: str
    data_file: Path | None = None
    quantization: object = None  # netspec.exporters.quantize's report (with .lines()) when quantized

    @property
    def top1_agreement(self) -> float | None:
        """Top-1 agreement over the random samples; None when the output is not N×K class scores."""
        return self.agreement.fraction if self.agreement.measure.kind == "top1" else None

    @property
    def real_top1_agreement(self) -> float | None:
        real = self.real_agreement
        return real.fraction if real is not None and real.measure.kind == "top1" else None

    def lines(self) -> list[str]:
        from netspec.exporters.runtime import printable

        wrote = (f"wrote {printable(self.path)} ({self.bytes / 2**20:.2f} MiB, opset {self.opset}, batch {self.batch}"
                 + (f", {self.quantization.kind}" if self.quantization is not None else "") + ")"
                 + (f" + {printable(self.data_file.name)}" if self.data_file else ""))
        notes = [f"note: {note}" for note in self.notes]
        if self.quantization is None:
            return [*notes, wrote, "onnx.checker (full_check): ok", *self.parity_lines()]
        # quantized: the float32 graph was checked and verified first, then quantized and judged in turn
        return [*notes, "float32 graph: onnx.checker (full_check): ok",
                *(f"float32 {line}" for line in self.parity_lines()), *self.quantization.lines(), wrote]


def export_onnx(source: Source, out: Path, opset: int = DEFAULT_OPSET, batch: str | int = "dynamic",
                quantize: str | None = None, calibration: int = DEFAULT_CALIBRATION,
                max_drop: float = 1.0) -> ExportReport:
    """Export, check, verify against PyTorch (and quantize, then verify that: netspec.exporters.quantize);
    the file exists afterwards only if all passed."""
    out = Path(out)
    model = source.model.eval()
    large = sum(t.numel() * t.element_size() for t in model.state_dict().values()) > EXTERNAL_DATA_BYTES
    check_opset(opset, large)
    shape = _check_input(source, batch)  # the size traced at: one allowed size when H, W are dynamic
    example = torch.randn(2 if batch == "dynamic" else int(batch), *shape)
    scratch = _scratch_beside(out)
    try:
        staged = scratch / out.name
        with lowered_ceil_pools(model):  # eager PyTorch keeps its own pools; parity compares against them
            _torch_export(model, example, staged, max(opset, EXPORTER_OPSET), batch, large, dynamic_input(source))
        if opset < EXPORTER_OPSET:
            convert_down(staged, opset)
        _write_metadata(staged, source, large)
        written = file_opset(staged)  # the file's own claim, what a runtime reads
        if written != opset:  # torch's exporter keeps its own opset when its conversion fails
            raise ExportError.at(None, "--opset", f"torch's exporter wrote opset {written}, not {opset}; "
                               "the file was not kept", OPSET_HINT)
        _check(staged)
        report = verify(staged, source, batch)
        report.opset = written
        if quantize is not None:  # the float file verified; its quantized form replaces it, verified in turn
            from netspec.exporters.quantize import quantize_file

            report.quantization = quantize_file(staged, source, quantize, calibration, max_drop, batch)
        data = out.with_name(out.name + ".data")
        report.data_file = data if (scratch / data.name).exists() else None  # written now, not found beside
        _move_into_place(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.path = out
    report.bytes = out.stat().st_size
    if report.data_file is None and data.exists():
        report.notes.append(f"{printable(data.name)} beside the model is not part of it (left as it was: "
                            "an earlier export's weights?)")
    return report


def _check_input(source: Source, batch) -> list[int]:
    """The example and parity inputs are allocated: sizes within runtime's documented bounds. Returns
    the sample shape to trace at (for dynamic H, W: the larger parity size, netspec.exporters.dynamic)."""
    from netspec.exporters.runtime import check_batch_memory

    dynamic = dynamic_input(source)
    shapes = [source.input_shape] if dynamic is None else dynamic.parity_sizes
    for shape in shapes:
        problem = input_size_problem(shape)
        if problem:
            raise ExportError.at(None, "export", f"input {problem}")
        check_batch_memory("--batch", 3 if batch == "dynamic" else int(batch), shape)  # verify's largest batch
    return shapes[-1]


def _scratch_beside(out: Path) -> Path:
    """A private scratch directory in the target's folder (so the final move is a rename)."""
    from netspec.exporters.runtime import printable

    if out.parent.exists() and not out.parent.is_dir():
        raise OptionError.at(None, "-o", f"{printable(out.parent)} is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".netspec-export-", dir=out.parent))
    except OSError as e:
        raise OptionError.at(None, "-o", f"cannot write into {printable(out.parent)} ({e.strerror or e})") from None


def _torch_export(model, example, path: Path, opset: int, batch, large: bool, sizes=None) -> None:
    """torch's dynamo exporter; dynamic axes: the batch (unless fixed) and, with `sizes` (a
    netspec.exporters.dynamic.DynamicInput), H and W as named Dims with check's minimum."""
    dynamic = ({0: torch.export.Dim("batch", min=1, max=65536)},) if batch == "dynamic" else None
    if sizes is not None:
        dynamic = sizes.torch_dynamic_shapes(batch=batch == "dynamic")
    try:
        with torch.no_grad(), native_ceil_pools(model) if sizes is not None else contextlib.nullcontext():
            torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
                              input_names=["input"], output_names=["output"], external_data=large, verbose=False)
    except NetspecError:
        raise
    except Exception as e:  # torch.export's constraint violations: the sizes the graph would need fixed
        if sizes is None:
            raise
        while e.__cause__ is not None:  # torch.onnx wraps torch.export's own error
            e = e.__cause__
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError.at(None, "export", f"torch.export cannot keep {sizes.text()} dynamic "
                             f"({type(e).__name__}: {printable(first)[:300]})", DIMENSION_HINT) from None


def _write_metadata(path: Path, source: Source, large: bool) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    del model.metadata_props[:]
    for key, value in source.card.export_metadata().items():  # netspec.modelcard: the one serializer
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"{source.name}, exported by netspec {netspec.__version__}"
    onnx.save(model, str(path))  # external data (if any) stays where it is, referenced by name


def _check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx.checker.ValidationError, shape inference errors
        raise verification_failed(f"the exported model fails onnx.checker: {str(e).splitlines()[0]}") from None


def verification_failed(message: str) -> ExportError:
    """An exported file that did not verify: exit 1, as a failed test (the file is not kept)."""
    error = ExportError.at(None, "", message)
    error.exit_code = 1
    return error


def verify(path: Path, source: Source, batch) -> ExportReport:
    """onnxruntime vs PyTorch: random inputs (two batch sizes when dynamic) and real samples."""
    from netspec.exporters.runtime import OnnxModel

    runtime = OnnxModel(path, provider="cpu", torch_in_process=True)
    report = measure_parity(runtime, source, batch,
                            lambda diff, agreement: ExportReport(path, 0, 0, str(batch), max_abs_diff=diff,
                                                                  agreement=agreement))
    return _checked(report)


def measure_parity(runtime, source: Source, batch, report_of):
    """The format's report of the file's `runtime` against eager PyTorch on random inputs
    (batch 1 and 3 when the batch is dynamic; at each parity size when H, W are) and, at a fixed
    size, on real validation samples. `report_of(max_diff, agreement)` makes the format's report."""
    from netspec.exporters.runtime import MAX_BATCH_BYTES

    measure = _measure(source)
    generator = torch.Generator().manual_seed(0)
    dynamic_batch = str(batch) == "dynamic"
    sizes = (1, 3) if dynamic_batch else (int(batch),)
    dynamic = dynamic_input(source)  # H, W dynamic: every batch size at each parity size
    shapes = [source.input_shape] if dynamic is None else dynamic.parity_sizes
    diffs, agree = [], 0
    for shape in shapes:
        for size in sizes:
            d, a = _compare(runtime, source.model, torch.randn(size, *shape, generator=generator))
            diffs.append(d)
            agree += a
    report = report_of(max(diffs), Agreement(measure, agree, len(shapes) * sum(sizes) * measure.per_sample))
    if dynamic is not None:  # real samples come at the training size only: parity at the sizes the file allows
        report.notes.append(f"dynamic input {dynamic.shape_text()} ({dynamic.text()}): parity verified at "
                            + " and ".join(f"{h}×{w}" for _, h, w in shapes))
        return report
    fitting = max(1, MAX_BATCH_BYTES // (4 * int(np.prod(source.input_shape))))  # huge inputs: fewer samples
    real = _validation_samples(source, min(REAL_SAMPLES, fitting) if dynamic_batch else int(batch), report)
    if real is not None:
        report.real_max_abs_diff, real_agree = _compare(runtime, source.model, real)
        report.real_samples = len(real)
        report.real_agreement = Agreement(measure, real_agree, len(real) * measure.per_sample)
    return report


def _checked(report: ExportReport) -> ExportReport:
    """The report, or the verification failure it shows."""
    if report.disagrees():
        raise verification_failed("onnxruntime disagrees with PyTorch: " + "; ".join(report.parity_lines())
                                  + " — the file was not kept")
    return report


def _measure(source: Source) -> Measure:
    """What agreement counts for this model's output shape (one sample through PyTorch)."""
    dynamic = dynamic_input(source)
    sample = source.input_shape if dynamic is None else dynamic.smallest
    with torch.no_grad():
        shape = source.model(torch.zeros(1, *sample)).shape[1:]
    return Measure.for_output(tuple(shape), PARITY_TOLERANCE)


def _compare(runtime, model, x: torch.Tensor) -> tuple[float, int]:
    """max |onnxruntime − torch| and how many of the output's units agree (see netspec.exporters.parity)."""
    with torch.no_grad():
        expected = model(x).numpy()
    actual = runtime.run(x.numpy())
    if actual.shape != expected.shape:  # a runtime that sizes a layer differently agrees on nothing
        return float("inf"), 0
    measure = Measure.for_output(expected.shape[1:], PARITY_TOLERANCE)
    with np.errstate(invalid="ignore"):  # inf − inf: handled just below
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))  # −inf from both sides agrees
        diff = np.where(same, 0.0, np.abs(actual - expected))  # NaN on one side only: NaN here, inf below
    return float(np.nan_to_num(diff, nan=np.inf, posinf=np.inf).max()), measure.agreeing(actual, expected)


def _validation_samples(source: Source, count: int, report: ExportReport) -> torch.Tensor | None:
    """Real validation images of the run, normalised exactly as in training (netspec.preprocess)."""
    try:
        images = source.validation_images(count)
    except NetspecError as e:
        report.notes.append(f"real-sample parity skipped ({e.diagnostics[0].message})")
        return None
    if images is None:
        return None
    return torch.from_numpy(source.card.preprocessing.apply_(images.astype(np.float32)))


def _move_into_place(scratch: Path, out: Path) -> None:
    from netspec.exporters.runtime import printable

    for staged in sorted(scratch.iterdir()):
        target = out.parent / staged.name
        try:
            staged.replace(target)
        except OSError as e:  # e.g. -o names a directory (through the API) or a read-only file
            raise OptionError.at(None, "-o", f"cannot write {printable(target)} ({e.strerror or e})") from None


# The exporter registry's interface (netspec/exporters/__init__.py); `verify` is defined above.
NAME, SUFFIX = "onnx", ".onnx"
OPTIONS = {"batch", "opset", "quantize", "calibration", "max_drop"}


def export(source: Source, out: Path, batch: int | None = None, **options) -> ExportReport:
    return export_onnx(source, out, batch=batch or "dynamic", **options)


def check_options(batch=None, opset: int = DEFAULT_OPSET, quantize: str | None = None,
                  max_drop: float | None = None, **_) -> None:
    check_opset(opset)
    if quantize is not None:
        from netspec.exporters.quantize import check_max_drop, check_quantize

        check_quantize(quantize)
        if max_drop is not None:
            check_max_drop(max_drop)


RUNTIME_OPTIONS = {"trt_fp16", "trt_cache"}  # what load() takes beyond provider and threads


def load(path: Path, provider: str = "auto", threads: int | None = None, **runtime_options):
    """The exported file as an onnxruntime session (checked before onnxruntime reads it);
    `trt_fp16`, `trt_cache`: the TensorRT engine's precision and cache folder."""
    from netspec.exporters.runtime import OnnxModel

    return OnnxModel(path, provider, threads, **runtime_options)
