"""The run directory: `runs/<name>-<n>/` with everything needed to evaluate, resume or export.

    spec.yaml            the spec as trained (includes inlined, so it loads on its own)
    config.json          the resolved training config, data facts (classes, mean/std), overrides
    metrics.jsonl        one JSON object per epoch
    curves.png           loss and accuracy curves
    last.safetensors     the latest weights (+ metadata naming its trainer state file)
    best.safetensors     the weights with the best validation accuracy
    state-*.safetensors  optimizer, RNG states and counters for --resume
    .lock                held (flock) by the one process training the run; names it
    per_class.json       per-class validation accuracy at the end (of the best weights)
    resumes.jsonl        one JSON object per `--resume`: when, from where, the settings it changed
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from netspec.errors import NetspecError, RunError
from netspec.lang.source import YMap, YSeq
from netspec.lang.spec import Spec, load
from netspec.train.checkpoint import atomic_write_text, damaged, open_regular, read_metadata, remove_stale_temporaries
from netspec.train.config import TrainConfig
from netspec.train.runlock import RunLock

RUNS = Path("runs")
# A config is ~1 KB plus the class names (a 10,000-class image folder: ~200 KB); a larger
# config.json is not one netspec wrote.
MAX_CONFIG_BYTES = 4 * 2**20


def new_run_dir(name: str, out: Path | None) -> tuple[Path, RunLock]:
    """A fresh run directory (`out`, or the next free runs/<name>-<n>), locked for training."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise RunError.at(None, "--out", f"{out} exists and is not a directory",
                               "give a directory for the run (it is created if missing)")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError.at(None, "--out", f"cannot create {out} ({e.strerror})") from None
        lock = claim(out, "--out")  # before looking inside: a run in progress is reported as such
        if (out / "last.safetensors").exists():
            lock.release()
            raise RunError.at(None, "--out", f"{out} already holds a run",
                               "continue it with --resume, or choose another --out")
        return out, lock
    RUNS.mkdir(exist_ok=True)
    taken = [int(m.group(1)) for p in RUNS.glob(f"{name}-*")
             if (m := re.fullmatch(rf"{re.escape(name)}-(\d+)", p.name))]
    for number in range(max(taken, default=0) + 1, max(taken, default=0) + 1000):
        path = RUNS / f"{name}-{number}"
        try:
            path.mkdir()
            return path, claim(path, "--out")
        except FileExistsError:  # another process took it
            continue
    raise RunError.at(None, "--out", f"cannot create a run directory under {RUNS}")


def run_to_resume(name: str, out: Path | None) -> tuple[Path, RunLock]:
    """The run `--resume` continues (`out`, or the most recent unfinished runs/<name>-<n>),
    locked for training."""
    run_dir = latest_run_dir(name, out)
    return run_dir, claim(run_dir, "--resume")


def claim(run_dir: Path, option: str) -> RunLock:
    """Lock the run for this training, then clear what killed earlier holders left behind."""
    lock = RunLock.acquire(run_dir, option)
    remove_stale_temporaries(run_dir)
    return lock


def latest_run_dir(name: str, out: Path | None) -> Path:
    """`out`, or the unfinished run of `name` whose checkpoint was written last: the one an
    interrupt left, not the highest-numbered (that may be finished, or older)."""
    if out is not None:
        if not Path(out).is_dir() or not (Path(out) / "config.json").exists():
            raise RunError.at(None, "--resume", f"{out} is not a netspec run directory (no config.json)")
        return Path(out)
    runs = [p for p in RUNS.glob(f"{name}-*") if re.fullmatch(rf"{re.escape(name)}-\d+", p.name)]
    runs = [p for p in runs if (p / "config.json").exists()]
    if not runs:
        raise RunError.at(None, "--resume", f"no run of `{name}` under {RUNS}/ to resume",
                           "start one without --resume, or give --out RUN_DIR")
    unfinished = [(written, p) for p in runs if (written := unfinished_since(p)) is not None]
    if not unfinished:
        newest = max(runs, key=lambda p: int(p.name.rsplit("-", 1)[1]))
        raise RunError.at(None, "--resume", f"no unfinished run of `{name}` under {RUNS}/: all {len(runs)} "
                           "finished", f"train one further with --resume --out {newest} --epochs N, or start a "
                           "new run without --resume")
    return max(unfinished)[1]


def unfinished_since(run_dir: Path) -> int | None:
    """When the run's newest checkpoint was written (ns), if the run is unfinished: its last
    epoch's end not yet done, or its end-of-run outputs missing. None for a finished run, and for
    one without a checkpoint (nothing to resume). A run whose files cannot be read counts as
    unfinished: resuming it names the damage."""
    for name in ("last.safetensors", "best.safetensors"):
        try:
            written = (run_dir / name).stat(follow_symlinks=False).st_mtime_ns
        except OSError:
            continue
        try:
            meta = read_metadata(run_dir / name)
            epochs = read_config(run_dir)["train"]["epochs"]
        except NetspecError:
            return written
        ended = meta.get("complete") is True and isinstance(meta.get("epoch"), int) and meta["epoch"] >= epochs
        return None if ended and (run_dir / "per_class.json").exists() else written
    return None


def write_spec_copy(run_dir: Path, spec: Spec) -> None:
    """The spec as trained: the text it was loaded from, and a spec with `include:` gets the blocks
    of the texts its includes were read from inlined (nothing is read again), so the copy stands alone."""
    from netspec.lang.source import parse_yaml

    text = spec.text
    root = parse_yaml(text) if spec.included else None
    if isinstance(root, YMap) and root.get("include"):
        text = _inline_includes(root, spec.path, spec.included)
    atomic_write_text(run_dir / "spec.yaml", without_editor_schema(text))


# `# yaml-language-server: $schema=../docs/spec.schema.json` tells an editor where the schema is,
# relative to the spec's own folder; from inside a run directory (which may be moved or shared)
# that path points nowhere, so the copy drops the comment.
_EDITOR_SCHEMA_LINE = re.compile(r"^[ \t]*#[ \t]*yaml-language-server[ \t]*:.*$", re.MULTILINE)


def without_editor_schema(text: str) -> str:
    """`text` with its yaml-language-server comments blanked (blank lines, so that every line
    number in the copy is the line number in the original spec). A matching line that is not a
    comment (inside a block scalar) is part of the spec's data and is kept."""
    from netspec.lang.source import parse_yaml

    data = _plain(parse_yaml(text))
    for match in reversed(list(_EDITOR_SCHEMA_LINE.finditer(text))):
        candidate = text[:match.start()] + text[match.end():]
        if _plain(parse_yaml(candidate)) == data:
            text = candidate
    return text


def _inline_includes(root: YMap, path: Path, read: dict) -> str:
    import io

    from ruamel.yaml import YAML

    data = _plain(root)
    data.pop("include")
    data["blocks"] = {**_included_blocks(root, path, read), **data.get("blocks", {})}
    stream = io.StringIO()
    stream.write(f"# {path.name} with its includes inlined by netspec\n")
    YAML().dump(data, stream)
    return stream.getvalue()


def _included_blocks(root: YMap, including: Path, read: dict) -> dict[str, Any]:
    """The blocks `root`'s includes give, as the loader merged them: each file's own blocks over
    those of its includes, from the texts the loader read (`read`, keyed as the loader keyed it)."""
    from netspec.lang.source import parse_yaml

    blocks: dict[str, Any] = {}
    for name in root.get("include", []):
        target, text = read[(str(including), name)]
        sub = parse_yaml(text, target.name)
        if isinstance(sub, YMap) and sub.get("include"):
            blocks.update(_included_blocks(sub, target, read))
        blocks.update((_plain(sub) or {}).get("blocks", {}))
    return blocks


def _plain(value):
    if isinstance(value, (YMap, dict)):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (YSeq, list)):
        return [_plain(v) for v in value]
    return value


def write_config(run_dir: Path, record: dict) -> None:
    atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2) + "\n")


def read_config(run_dir: Path) -> dict:
    """config.json, bounded and checked: a JSON object whose `train` is a valid TrainConfig and
    whose `overrides` are strings; anything else is a RunError naming the file."""
    path = Path(run_dir) / "config.json"
    with open_regular(path, "run config", kind=RunError) as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise damaged(path, f"larger than {MAX_CONFIG_BYTES:,} bytes: not a netspec run config", kind=RunError)
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not UTF-8 text: not a netspec run config", kind=RunError) from None
    except (ValueError, RecursionError) as e:
        raise damaged(path, f"not valid JSON ({str(e)[:120]})", kind=RunError) from None
    return _check_config(record, path)


def _check_config(record, path: Path) -> dict:
    if not isinstance(record, dict) or not isinstance(record.get("train"), dict):
        raise damaged(path, "not a netspec run config (expected a JSON object with `train` settings)", kind=RunError)
    try:
        TrainConfig.model_validate(record["train"])
    except ValidationError as e:
        error = e.errors(include_url=False)[0]
        where = ".".join(ascii(str(part))[1:-1][:60] for part in error["loc"])
        raise damaged(path, f"`train.{where}`: {error['msg'][0].lower()}{error['msg'][1:]}", kind=RunError) from None
    overrides = record.get("overrides", [])
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        raise damaged(path, "`overrides` must be a list of `name=value` strings", kind=RunError)
    return record


def load_run_spec(run_dir: Path, overrides: list[str]) -> Spec:
    """The run's own copy of its spec (a regular file in the run, never a link out of it)."""
    path = Path(run_dir) / "spec.yaml"
    open_regular(path, "spec as trained", kind=RunError).close()
    return load(path, overrides=overrides)
