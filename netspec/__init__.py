"""netspec: declarative CNN specs — static shapes, params and MACs, then torch, training and ONNX.

    import netspec
    spec = netspec.load("specs/lenet.yaml")   # parse + validate; raises netspec.SpecError
    report = netspec.check(spec)              # static: report.output, report.params, report.rows

Nothing imported here pulls in torch: `check` is pure Python.
"""

from netspec.errors import SpecError
from netspec.infer import check
from netspec.report import Report
from netspec.spec import Spec, load, loads

__version__ = "0.1.0"

__all__ = ["SpecError", "Spec", "Report", "load", "loads", "check", "__version__"]


def build(spec):
    """Build the torch.nn.Module for a spec (a `Spec` or a path); imports torch on first use."""
    from netspec.compiler import build as build_module

    return build_module(spec)


__all__.append("build")
