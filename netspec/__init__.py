"""netspec: declarative CNN specs — static shapes, params and MACs, then torch, training and ONNX.

    import netspec
    spec = netspec.load("specs/lenet.yaml")   # parse + validate; raises netspec.SpecError
    report = netspec.check(spec)              # static: report.output, report.params, report.rows
    run = netspec.load_run("runs/lenet5-1")   # a trained run: run.model, run.predict("digit.png")

Nothing imported here pulls in torch: `check` is pure Python.
"""

from netspec.errors import SpecError
from netspec.lang.ir import Spec
from netspec.lang.spec import load, loads
from netspec.shapes.inference import check
from netspec.shapes.report import Report

__version__ = "0.1.0"

__all__ = ["SpecError", "Spec", "Report", "load", "loads", "check", "__version__"]


def build(spec):
    """Build the torch.nn.Module for a spec (a `Spec` or a path, loaded here); imports torch on first use."""
    from netspec.compile.compiler import build as build_module

    return build_module(spec if isinstance(spec, Spec) else load(spec))


__all__.append("build")


def load_run(run_dir, weights: str = "best"):
    """A trained run directory with its `weights` (best or last) loaded: `.model` (eval mode),
    `.spec`, `.config`, `.labels`, `.card` and `.predict(images)` (netspec/predict.py); imports
    torch on first use."""
    from netspec.predict import load_run as load_trained_run

    return load_trained_run(run_dir, weights)


__all__.append("load_run")
