"""The run directory: `runs/<name>-<n>/` with everything needed to evaluate, resume or export.

    spec.yaml            the spec as trained (includes inlined, so it loads on its own)
    config.json          the resolved training config, data facts (classes, mean/std), overrides
    metrics.jsonl        one JSON object per epoch
    curves.png           loss and accuracy curves
    last.safetensors     the latest weights (+ metadata naming its trainer state file)
    best.safetensors     the weights with the best validation accuracy
    state-*.safetensors  optimizer, RNG states and counters for --resume
    per_class.json       per-class validation accuracy at the end
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from netspec.checkpoint import atomic_write_text
from netspec.errors import SpecError
from netspec.source import YMap, YSeq, load_yaml_file
from netspec.spec import Spec

RUNS = Path("runs")


def new_run_dir(name: str, out: Path | None) -> Path:
    if out is not None:
        out = Path(out)
        if (out / "last.safetensors").exists():
            raise SpecError.at(None, "--out", f"{out} already holds a run",
                               "continue it with --resume, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        return out
    RUNS.mkdir(exist_ok=True)
    taken = [int(m.group(1)) for p in RUNS.glob(f"{name}-*") if (m := re.fullmatch(rf"{re.escape(name)}-(\d+)", p.name))]
    for number in range(max(taken, default=0) + 1, max(taken, default=0) + 1000):
        path = RUNS / f"{name}-{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took it
            continue
    raise SpecError.at(None, "--out", f"cannot create a run directory under {RUNS}")


def latest_run_dir(name: str, out: Path | None) -> Path:
    if out is not None:
        if not (Path(out) / "config.json").exists():
            raise SpecError.at(None, "--resume", f"{out} is not a netspec run directory (no config.json)")
        return Path(out)
    runs = [p for p in RUNS.glob(f"{name}-*") if re.fullmatch(rf"{re.escape(name)}-\d+", p.name)]
    runs = [p for p in runs if (p / "config.json").exists()]
    if not runs:
        raise SpecError.at(None, "--resume", f"no run of `{name}` under {RUNS}/ to resume",
                           "start one without --resume, or give --out RUN_DIR")
    return max(runs, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def write_spec_copy(run_dir: Path, spec: Spec) -> None:
    """The spec as trained; a spec with `include:` gets its blocks inlined so the copy stands alone."""
    text = spec.text
    if spec.path is not None and spec.path.exists():
        root = load_yaml_file(spec.path)
        if isinstance(root, YMap) and root.get("include"):
            text = _inline_includes(root, spec.path)
    atomic_write_text(run_dir / "spec.yaml", text)


def _inline_includes(root: YMap, path: Path) -> str:
    import io

    from ruamel.yaml import YAML

    blocks: dict[str, Any] = {}
    for name in root.get("include", []):
        included = load_yaml_file(path.parent / name)
        sub = _plain(included)
        if isinstance(sub, dict) and sub.get("include"):
            text = _inline_includes(included, path.parent / name)
            from netspec.source import parse_yaml
            sub = _plain(parse_yaml(text))
        blocks.update((sub or {}).get("blocks", {}))
    data = _plain(root)
    data.pop("include")
    data["blocks"] = {**blocks, **data.get("blocks", {})}
    stream = io.StringIO()
    stream.write(f"# {path.name} with its includes inlined by netspec\n")
    YAML().dump(data, stream)
    return stream.getvalue()


def _plain(value):
    if isinstance(value, (YMap, dict)):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (YSeq, list)):
        return [_plain(v) for v in value]
    return value


def write_config(run_dir: Path, record: dict) -> None:
    atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2) + "\n")


def read_config(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
