"""`netspec eval RUN_DIR`: accuracy, per-class accuracy and the confusion matrix of a run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from netspec.checkpoint import atomic_write_text, load_weights, read_metadata
from netspec.data import load_data
from netspec.data.batches import Batches
from netspec.errors import SpecError
from netspec.metrics import confusion_matrix, confusion_text, per_class_accuracy, per_class_table, plot_confusion
from netspec.rundir import read_config
from netspec.spec import load
from netspec.training_setup import check_outputs


def load_run(run_dir: Path, weights: str = "best") -> tuple[torch.nn.Module, dict, dict]:
    """(model with the run's weights, config.json, the weights' metadata)."""
    import netspec

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise SpecError.at(None, "eval", f"{run_dir} is not a netspec run directory (no config.json)")
    path = run_dir / f"{weights}.safetensors"
    if not path.exists():
        raise SpecError.at(None, "--weights", f"{path} does not exist", "the run has no checkpoint yet")
    config = read_config(run_dir)
    model = netspec.build(load(run_dir / "spec.yaml", overrides=config.get("overrides", [])))
    model.load_state_dict(load_weights(path))
    return model.eval(), config, read_metadata(path)


@torch.no_grad()
def evaluate_run(run_dir: Path, data_name: str | None = None, data_root: str | None = None,
                 weights: str = "best", batch_size: int = 256) -> dict:
    run_dir = Path(run_dir)
    model, config, meta = load_run(run_dir, weights)
    train = config["train"]
    spec = load(run_dir / "spec.yaml", overrides=config.get("overrides", []))
    data = load_data(data_name or train["data"], spec.input, Path(data_root or train.get("data_root") or "") or None,
                     train["seed"])
    data.mean, data.std = tuple(meta["mean"]), tuple(meta["std"])  # normalise exactly as in training
    check_outputs(tuple(model.netspec["output"]), data, spec)
    batches = Batches(data, "val", batch_size, torch.device("cpu"), None)
    batches.normalize = meta.get("normalize", True)
    classes = len(data.classes)
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    for x, y in batches.epoch(0, 0):
        confusion += confusion_matrix(model(x).argmax(1).clamp_max(classes - 1), y, classes)
    accuracy = int(confusion.diag().sum()) / max(int(confusion.sum()), 1)
    print(f"{run_dir} ({weights} weights, epoch {meta.get('epoch')}) on {data.name} validation: "
          f"accuracy {accuracy * 100:.2f}% ({int(confusion.diag().sum())}/{int(confusion.sum())})")
    print(per_class_table(data.classes, confusion))
    print(confusion_text(data.classes, confusion))
    plot_confusion(data.classes, confusion, run_dir / "confusion.png")
    record = {"data": data.name, "weights": weights, "accuracy": accuracy,
              "per_class": dict(zip(data.classes, per_class_accuracy(confusion))), "confusion": confusion.tolist()}
    atomic_write_text(run_dir / "eval.json", json.dumps(record, indent=2) + "\n")
    print(f"wrote {run_dir / 'confusion.png'} and {run_dir / 'eval.json'}")
    return record
