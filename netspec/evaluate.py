"""`netspec eval RUN_DIR`: accuracy, per-class accuracy and the confusion matrix of a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from netspec.checkpoint import atomic_write_text, load_weights
from netspec.data import Data, load_data
from netspec.data.batches import Batches
from netspec.errors import Diagnostic, SpecError
from netspec.metrics import accuracy, confusion_text, per_class_accuracy, per_class_table, plot_confusion, validate
from netspec.rundir import load_run_spec, read_config
from netspec.spec import Spec
from netspec.training_setup import check_run_outputs
from netspec.weights import SpecMismatch, is_intact, read_checked

WEIGHTS = ("best", "last")  # the weights files a run holds: <name>.safetensors


@dataclass
class Run:
    """A trained run, loaded: the model with its weights, the spec as trained, config, metadata."""

    directory: Path
    model: torch.nn.Module
    spec: Spec
    config: dict
    meta: dict  # of the weights file: epoch, labels, mean/std, normalize, ...

    def validation_data(self, data_name: str | None = None, data_root: str | None = None) -> Data:
        """The validation split (of the training dataset unless `data_name`), normalised as in
        training: with the mean/std saved with the weights, not recomputed."""
        train = self.config["train"]
        root = data_root or train.get("data_root")
        data = load_data(data_name or train["data"], self.spec.input, Path(root) if root else None, val_only=True)
        data.mean, data.std = tuple(self.meta["mean"]), tuple(self.meta["std"])
        return data

    @property
    def labels(self) -> list[str] | None:
        """The class of each output, as training mapped them (saved with the weights)."""
        return self.meta.get("labels")

    @property
    def trained_on(self) -> str:
        return str(self.config["train"].get("data"))


def load_run(run_dir: Path, weights: str = "best") -> Run:
    """A run directory, checked: config.json, the spec as trained, and the weights file (whose
    tensors must fit that spec). Each problem is a SpecError naming the file."""
    import netspec

    run_dir = Path(run_dir)
    if weights not in WEIGHTS:
        raise SpecError.at(None, "--weights", f"expected one of {', '.join(WEIGHTS)}, got {ascii(weights[:40])}")
    if not (run_dir.is_dir() and (run_dir / "config.json").exists()):
        raise SpecError.at(None, "eval", f"{run_dir} is not a netspec run directory (no config.json)")
    path = run_dir / f"{weights}.safetensors"
    if not path.exists():
        raise SpecError.at(None, "--weights", f"{path} does not exist", "the run has no checkpoint yet")
    config = read_config(run_dir)
    spec = load_run_spec(run_dir, config.get("overrides", []))
    model = netspec.build(spec)
    channels = spec.input[0]
    try:
        meta = read_checked(path, model, channels)
        model.load_state_dict(load_weights(path))
    except SpecMismatch:
        raise
    except SpecError as error:
        other = WEIGHTS[1 - WEIGHTS.index(weights)]
        if is_intact(run_dir / f"{other}.safetensors", model, channels):
            d = error.diagnostics[0]
            raise SpecError([Diagnostic(d.mark, d.where, d.message, f"{other}.safetensors is intact: "
                                        f"use --weights {other}")]) from None
        raise
    labels, scores = meta.get("labels"), model.netspec["output"]
    if labels is not None and [len(labels)] != list(scores):
        from netspec.checkpoint import damaged

        raise damaged(path, f"its metadata names {len(labels)} classes for {'×'.join(map(str, scores))} outputs")
    return Run(run_dir, model.eval(), spec, config, meta)


def evaluate_run(run_dir: Path, data_name: str | None = None, data_root: str | None = None,
                 weights: str = "best", batch_size: int = 256) -> dict:
    run = load_run(run_dir, weights)
    data = run.validation_data(data_name, data_root)
    check_run_outputs(tuple(run.model.netspec["output"]), data, run.directory, run.labels, run.trained_on)
    batches = Batches(data, "val", batch_size, torch.device("cpu"), normalize=run.meta.get("normalize", True))
    _, confusion = validate(run.model, batches, len(data.classes))
    correct, total = int(confusion.diag().sum()), int(confusion.sum())
    print(f"{run.directory} ({weights} weights, epoch {run.meta.get('epoch')}) on {data.name} validation: "
          f"accuracy {accuracy(confusion) * 100:.2f}% ({correct}/{total})")
    print(per_class_table(data.classes, confusion))
    print(confusion_text(data.classes, confusion))
    plot_confusion(data.classes, confusion, run.directory / "confusion.png")
    record = {"data": data.name, "weights": weights, "accuracy": accuracy(confusion),
              "per_class": dict(zip(data.classes, per_class_accuracy(confusion))), "confusion": confusion.tolist()}
    atomic_write_text(run.directory / "eval.json", json.dumps(record, indent=2) + "\n")
    print(f"wrote {run.directory / 'confusion.png'} and {run.directory / 'eval.json'}")
    return record
