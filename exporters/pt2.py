"""`netspec export SPEC|RUN_DIR --format pt2`: a torch.export program (`.pt2`) that answers like PyTorch.

The model is traced with `torch.export.export` (the batch axis dynamic, 1–65,536, unless `--batch N`
fixes it; a symbolic `input: [3, H, W]` keeps H and W dynamic as well, see `_size_dims`) and
written with `torch.export.save`, the model card as the archive entry `extra/netspec.json` (the
export metadata of netspec.modelcard, the same keys an ONNX file carries).
The written file is then read back the way `netspec infer` reads any `.pt2` — through
netspec.exporters.pt2_reader, never `torch.export.load` (which unpickles) — and its outputs are
compared with eager PyTorch's on random inputs at two batch sizes and, for a run, on real
validation samples; a file that disagrees is not kept (exit 1).

Running a `.pt2` is torch's own eager kernels over the exported graph (`ExportedProgram.module()`),
on the CPU or, where torch sees one, a CUDA GPU.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.errors import ExportError, ModelFileError, OptionError, printable
from netspec.exporters.parity import ParityFigures
from netspec.modelcard import ModelCard, input_size_problem
from netspec.run import Source

NAME, SUFFIX = "pt2", ".pt2"
OPTIONS = {"batch"}
CARD_ENTRY = "netspec.json"  # the archive's extra/netspec.json: the model card's export metadata
MAX_DYNAMIC_BATCH = 65_536  # as for ONNX: the batch axis's upper bound in the exported program
PROVIDERS = ("auto", "cpu", "cuda")


@dataclass
class Pt2Report(ParityFigures):
    COMPARED = "loaded .pt2 − eager torch"

    path: Path
    bytes: int
    batch: str

    def lines(self) -> list[str]:
        return [*(f"note: {note}" for note in self.notes),
                f"wrote {printable(self.path)} ({self.bytes / 2**20:.2f} MiB, torch.export program, "
                f"batch {self.batch})",
                "read back through netspec's checked .pt2 reader: ok", *self.parity_lines()]


def export(source: Source, out: Path, batch: int | None = None) -> Pt2Report:
    """Export, read back and verify against eager PyTorch; the file exists afterwards only if all passed."""
    from netspec.exporters.onnx import _move_into_place, _scratch_beside

    out = Path(out)
    shown = "dynamic" if batch is None else str(batch)
    shape = _check_input(source, batch)
    try:
        program, note = _trace(source, batch, shape), None
    except ExportError:  # a dynamic range whose inner sizes can reach 1: traced again from where they cannot
        source, note = _traceable_source(source)
        if note is None:
            raise
        program = _trace(source, batch, _check_input(source, batch))
    scratch = _scratch_beside(out)
    try:
        staged = scratch / out.name
        _save(program, staged, source)
        report = verify(staged, source, shown)
        _move_into_place(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.path, report.bytes = out, out.stat().st_size
    report.notes[:0] = [note] if note else []
    return report


def _traceable_source(source: Source) -> tuple[Source, str | None]:
    """`source` with its dynamic sizes' minimums raised to what torch.export can trace (every size
    that depends on them ≥ 2: netspec.exporters.dynamic.traceable_minimums), so the file's card,
    parity sizes and Dims all say the range the program takes, and a note; (source, None) when
    nothing can be raised. Used only once a trace at check's own minimums has failed."""
    import dataclasses

    from netspec.exporters.dynamic import dynamic_input, from_card, traceable_minimums

    dynamic = dynamic_input(source)
    if dynamic is None or source.spec is None:
        return source, None
    minimums = traceable_minimums(source.spec, dynamic)
    if all(minimums[rule.symbol] == rule.min for rule in dynamic.rules):
        return source, None
    record = {symbol: {**rule, "min": minimums[symbol]} for symbol, rule in source.card.input_constraints.items()}
    raised = from_card(source.card.input_shape, record)
    card = dataclasses.replace(source.card, input_constraints=record)
    return dataclasses.replace(source, card=card), (
        f"the .pt2 takes {raised.text()} (check allows {dynamic.text()}): torch.export specialises sizes 0 "
        "and 1, so every size that depends on the input's is kept ≥ 2; smaller images are resized by infer")


def _check_input(source: Source, batch: int | None) -> list[int]:
    """Each parity input within the card's bounds and the memory budget; the sample shape to trace
    at (for a dynamic H, W: the larger parity size, netspec.exporters.dynamic)."""
    from netspec.exporters.runtime import check_batch_memory

    for shape in _parity_shapes(source):
        problem = input_size_problem(shape)
        if problem:
            raise ExportError.at(None, "export", f"input {problem}")
        check_batch_memory("--batch", 3 if batch is None else int(batch), shape)
    return shape


def _parity_shapes(source: Source) -> list[list[int]]:
    from netspec.exporters.dynamic import dynamic_input

    dynamic = dynamic_input(source)
    return [source.input_shape] if dynamic is None else dynamic.parity_sizes


def _trace(source: Source, batch: int | None, shape: list[int]):
    import torch

    from netspec.exporters.dynamic import DIMENSION_HINT, dynamic_input

    model = source.model.eval()
    example = torch.randn(2 if batch is None else int(batch), *shape)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},) if batch is None else None
    sizes = dynamic_input(source)
    if sizes is not None:  # H and W as Dims that allow exactly check's sizes (and the batch unless fixed)
        dynamic = _size_dims(sizes, batch is None)
    try:
        with torch.no_grad():
            return torch.export.export(model, (example,), dynamic_shapes=dynamic)
    except Exception as e:  # torch.export's UserError, GuardOnDataDependentSymNode, …
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        what = f"keep {sizes.text()} dynamic" if sizes is not None else f"trace {printable(source.name)}"
        raise ExportError.at(None, "export", f"torch.export cannot {what} ({printable(first)[:200]})",
                             DIMENSION_HINT if sizes is not None else None) from None


def _size_dims(sizes, batch: bool) -> tuple:
    """torch.export's dynamic_shapes for check's rules: a size n ≥ min with n mod period = r is the
    derived Dim period·k + r (torch.export refuses a plain Dim the graph needs to be a multiple);
    a rule allowing several residues has no such form and is refused."""
    import torch

    from netspec.exporters.dynamic import DIMENSION_HINT
    from netspec.modelcard import MAX_INPUT_SIDE

    axes = {0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)} if batch else {}
    for rule in sizes.rules:
        if len(rule.residues) != 1:
            raise ExportError.at(None, "export", f"--format pt2 cannot keep {rule.text()} dynamic: torch.export "
                                 "expresses one residue per size", DIMENSION_HINT)
        period, residue = rule.period, rule.residues[0]
        if period == 1:
            dim = torch.export.Dim(rule.symbol, min=rule.min, max=MAX_INPUT_SIDE)
        else:
            least = -(-(rule.min - residue) // period)
            dim = period * torch.export.Dim(f"{rule.symbol}_{period}", min=max(least, 1),
                                            max=(MAX_INPUT_SIDE - residue) // period) + residue
        for d in rule.dims:
            axes[d + 1] = dim
    return (axes,)


def _save(program, path: Path, source: Source) -> None:
    import torch

    card = json.dumps(source.card.export_metadata(), sort_keys=True)  # netspec.modelcard: the one serializer
    torch.export.save(program, str(path), extra_files={CARD_ENTRY: card})


def verify(path: Path, source: Source, batch) -> Pt2Report:
    """The loaded file (netspec's reader) vs eager PyTorch: random inputs (two batch sizes when
    dynamic) and real validation samples of a run, measured as for ONNX (onnx.measure_parity)."""
    from netspec.exporters.onnx import measure_parity

    batch = str(batch)
    report = measure_parity(Pt2Model(path, "cpu"), source, batch,
                            lambda diff, agreement: Pt2Report(path, 0, batch, max_abs_diff=diff, agreement=agreement))
    return _checked(report)


def _checked(report: Pt2Report) -> Pt2Report:
    """The report, or the verification failure it shows (exit 1, no file)."""
    from netspec.exporters.onnx import verification_failed

    if report.disagrees():
        raise verification_failed("the loaded .pt2 disagrees with PyTorch: " + "; ".join(report.parity_lines())
                                  + " — the file was not kept")
    return report


def load(path: Path, provider: str = "auto", threads: int | None = None) -> "Pt2Model":
    """The exported file as a runtime, read through netspec's checked reader (nothing unpickled)."""
    return Pt2Model(path, provider, threads)


class Pt2Model:
    """A `.pt2` program run by torch; `card` from its extra/netspec.json; `run` takes float32 N×C×H×W."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None):
        import torch

        from netspec.exporters.pt2_reader import read_pt2

        self.path = path = Path(path)
        self.where = printable(path)
        self.device, self.notes = _device(provider)
        if threads:
            torch.set_num_threads(threads)
        program, extra = read_pt2(path)
        sizes, classes = self._signature(program)
        try:
            self.module = program.module().to(self.device)  # guard-free (the reader checked): no file code runs
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError.at(None, "model", f"{self.where} is not a runnable torch.export program "
                                    f"({printable(first)[:160]})") from None
        self.provider = f"torch {self.device}"
        self.fixed_batch = sizes[0]
        self.card = ModelCard.from_export_metadata(_card_fields(extra, self.where), sizes[1:], classes, self.where)

    def _signature(self, program) -> tuple[list, int | None]:
        """The one float input N×C×H×W (or N×F) and the output's class count when fixed."""
        import torch

        nodes = {node.name: node for node in program.graph.nodes}
        signature = program.graph_signature
        value = nodes[signature.user_inputs[0]].meta.get("val")
        out = nodes.get(str(signature.user_outputs[0]))
        out_value = out.meta.get("val") if out is not None else None
        if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or value.dim() not in (2, 4):
            raise ModelFileError.at(None, self.where, "the program's input is not a float32 tensor of rank 2 or 4; "
                                    "netspec models take float N×C×H×W or N×F")
        sizes = [d if isinstance(d, int) and d > 0 else None for d in value.shape]
        shape = list(out_value.shape) if isinstance(out_value, torch.Tensor) else []
        classes = shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else None
        return sizes, classes

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for float32 N×C×H×W; a fixed-batch program is fed chunks of its batch size,
        the last one padded by repeating its final sample."""
        from netspec.exporters.runtime import in_fixed_batches

        return in_fixed_batches(np.ascontiguousarray(x, dtype=np.float32), self.fixed_batch, self._run)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        try:
            with torch.inference_mode():
                return self.module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
        except (RuntimeError, AssertionError, ValueError, TypeError, IndexError) as e:  # a shape the program refuses
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError.at(None, self.where,
                                    f"torch cannot run the program ({printable(first)[:200]})") from None


def _device(provider: str) -> tuple[str, list[str]]:
    """`--provider` for a .pt2: torch's cpu, or cuda where torch sees a GPU (auto: cuda if it does)."""
    import torch

    if provider not in PROVIDERS:
        hint = "TensorRT runs ONNX files (export with --onnx)" if provider == "tensorrt" else None
        raise OptionError.at(None, "--provider", f"a .pt2 program runs on {', '.join(PROVIDERS)}; "
                             f"not {ascii(provider)[1:-1][:40]}", hint)
    available = torch.cuda.is_available()
    if provider == "cuda" and not available:
        raise OptionError.at(None, "--provider", "cuda: torch sees no CUDA GPU here", "use --provider cpu or auto")
    if provider == "auto":
        return ("cuda" if available else "cpu"), []
    return provider, []


def _card_fields(extra: dict, where: str) -> dict:
    """extra/netspec.json: a JSON object of strings (netspec.modelcard validates each field)."""
    raw = extra.get(CARD_ENTRY)
    if raw is None:
        raise ModelFileError.at(None, where, f"has no extra/{CARD_ENTRY}: it was not written by `netspec export`",
                                "export it with `netspec export … --format pt2`")
    try:
        fields = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ModelFileError.at(None, where, f"extra/{CARD_ENTRY} is not valid JSON ({printable(e)[:80]})") from None
    if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ModelFileError.at(None, where, f"extra/{CARD_ENTRY} is not a JSON object of strings")
    return fields
