"""Which opset an ONNX export is written at, and the conversion below the exporter's own.

Opsets: torch 2.14's exporter implements opset 18 (`torch.onnx._internal.exporter._constants.
TORCHLIB_OPSET`) and writes 18–23 (`torch.onnx._constants.ONNX_MAX_OPSET`) itself. Asked for
less, it exports 18 and tries a conversion that, when it fails, logs a traceback and keeps 18. So
for 7–17 we export 18 and convert one opset at a time with onnx.version_converter: it stops at
the first operator it has no adapter for (Relu 14 → 13 in every netspec CNN so far; Pad 18 → 17
where a ceil_mode pool needs its overhang padded, below) and the user is told the lowest opset
this model reaches. The opset printed is read back from the file.
(The TorchScript exporter, `dynamo=False`, still writes 7–20 in torch 2.14 but is deprecated
since 2.9; one exporter keeps one graph to verify.)

Below 18, onnx's Reduce adapters keep opset 18's `noop_with_empty_axes` attribute, which the
file's checker then refuses; netspec drops it where it holds its default (see _drop_noop_with_empty_axes).
"""

from __future__ import annotations

import re
from pathlib import Path

from netspec.errors import ExportError, OptionError

DEFAULT_OPSET = 18
EXPORTER_OPSET = 18  # what torch 2.14's exporter implements; lower opsets are converted from it
MAX_OPSET = 23  # torch.onnx._constants.ONNX_MAX_OPSET in torch 2.14
MIN_OPSET = 7  # the oldest opset onnxruntime guarantees to run

OPSET_HINT = (f"torch's exporter writes opsets {EXPORTER_OPSET}–{MAX_OPSET}; {MIN_OPSET}–{EXPORTER_OPSET - 1} are "
              f"converted from {EXPORTER_OPSET} by onnx's version converter, as far as it has adapters for "
              "the model's operators")


def check_opset(opset: int, large: bool = False) -> None:
    """Refuse, before any work, an opset that no path here can write."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OptionError.at(None, "--opset", f"opset {opset} is not supported: choose {MIN_OPSET} to {MAX_OPSET}",
                           OPSET_HINT)
    if large and opset < EXPORTER_OPSET:  # the converter serialises the whole model into one protobuf
        raise OptionError.at(None, "--opset", f"opset {opset} needs a conversion from {EXPORTER_OPSET}, which "
                           "onnx's version converter cannot do for a model over 2 GB",
                           f"choose {EXPORTER_OPSET} to {MAX_OPSET}")


def convert_down(path: Path, opset: int) -> None:
    """Opset 18 → `opset`, one opset at a time, so a failure names the lowest opset this model reaches."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    reached = EXPORTER_OPSET
    while reached > opset:
        try:
            model = version_converter.convert_version(model, reached - 1)
        except Exception as e:  # the C++ converter fails an assertion (RuntimeError) naming the operator
            raise ExportError.at(None, "--opset", f"this model cannot be written below opset {reached}: onnx's "
                               f"version converter {_converter_reason(e, reached)}",
                               f"choose {reached} to {MAX_OPSET}") from None
        reached -= 1
        _drop_noop_with_empty_axes(model, reached)
    onnx.save(model, str(path))


def _drop_noop_with_empty_axes(model, opset: int) -> None:
    """onnx's 18 → 17 adapters move a Reduce op's `axes` input into an attribute but keep the opset-18
    attribute `noop_with_empty_axes`, which opset 17 lacks, so onnx.checker refuses the file. At its default 0
    it means what opset 17 does with absent axes (reduce over all), so dropping it changes nothing; at 1
    (an empty reduction is the identity) opset 17 cannot say it, and the model stops at 18."""
    from onnx import defs

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        held = [a for a in node.attribute if a.name == "noop_with_empty_axes"]
        if not held or "noop_with_empty_axes" in defs.get_schema(node.op_type, opset).attributes:
            continue
        if held[0].i != 0:
            raise ExportError.at(None, "--opset", f"this model cannot be written below opset {opset + 1}: its "
                               f"{node.op_type} treats empty axes as the identity (noop_with_empty_axes), "
                               f"which opset {opset} cannot express", f"choose {opset + 1} to {MAX_OPSET}")
        node.attribute.remove(held[0])


def _converter_reason(error: Exception, reached: int) -> str:
    found = re.search(r"No Adapter (?:From|To) Version \$?(\d+) for (\w+)", str(error))
    if found:
        return f"has no adapter for {found.group(2)} from opset {reached} to {reached - 1}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"failed at opset {reached} → {reached - 1} ({first[:200]})"


def file_opset(path: Path) -> int | None:
    """The default-domain opset the file declares (what a runtime will read)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
