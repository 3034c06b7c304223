"""Run directories are never lost: one training per run (a lock), cleanup of only what is
stale, and `--resume` / `eval` / `export` that refuse damaged or tampered files with exit 2
naming the file — or fall back to an intact checkpoint with a note."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import netspec.train.checkpoint as checkpoint_module
from netspec.compile.weights import SpecMismatch, check_fits
from netspec.train.loop import train
from tests.conftest import ROOT, SPECS

LENET = SPECS / "lenet.yaml"
STATE = "state-000000044.safetensors"  # 1 epoch of digits at batch 32 = 44 steps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch LeNet run on digits; tests damage copies of it."""
    out = tmp_path_factory.mktemp("hostile") / "trained"
    train(LENET, {"data": "digits", "epochs": 1}, out=out)
    assert (out / STATE).exists()
    return out


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def rewrite_metadata(path, **raw: str) -> None:
    """Replace metadata values (raw strings, as stored) of a safetensors file, keeping its tensors."""
    with safe_open(str(path), framework="pt") as f:
        meta = {**f.metadata(), **raw}
    save_file(load_file(path), str(path), metadata=meta)


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def resume(cli, run, epochs: int = 2):
    return cli("train", LENET, "--resume", "--out", run, "--epochs", epochs)


def snapshot(directory) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


def wait_until(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lock_pid(run_dir) -> int | None:
    try:
        return json.loads((run_dir / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


# -- one training per run directory ----------------------------------------------------------------
def test_a_second_training_into_one_out_exits_2_and_the_first_finishes(tmp_path, cli):
    out, log = tmp_path / "run", tmp_path / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "train", str(LENET), "--data", "digits",
                                  "--epochs", "2", "--out", str(out)], cwd=tmp_path, stdout=sink, stderr=sink)
    try:
        wait_until(lambda: lock_pid(out) == first.pid and (out / "config.json").exists() or first.poll() is not None,
                   what="the first training to take the lock")
        first.send_signal(signal.SIGSTOP)  # frozen while holding the lock: no race with its end
        assert first.poll() is None, log.read_text()
        before = snapshot(out)
        for extra in ([], ["--resume"]):
            second = cli("train", LENET, "--data", "digits", "--epochs", "1", "--out", out, *extra)
            assert second.code == 2, second.err
            assert f"pid {first.pid}" in second.err and str(out) in second.err and "Traceback" not in second.err
        assert snapshot(out) == before  # the second touched nothing
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, log.read_text()
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
        first.wait()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    evaluated = cli("eval", out)
    assert evaluated.code == 0, evaluated.err
    assert json.loads((out / "eval.json").read_text())["accuracy"] > 0.5  # the first run's weights, trained


def test_a_killed_holder_does_not_block_a_later_resume(run, cli):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from netspec.train.runlock import RunLock;"
         "lock = RunLock.acquire(Path(sys.argv[1]), '--out'); print('locked', flush=True); time.sleep(300)", str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        blocked = resume(cli, run)
        assert blocked.code == 2 and f"pid {holder.pid}" in blocked.err
    finally:
        holder.kill()
        holder.wait()
    resumed = resume(cli, run)
    assert resumed.code == 0, resumed.err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_a_planted_lock_file_is_refused_without_writing_through_it(run, cli, tmp_path, kind):
    lock, target = run / ".lock", tmp_path / "precious.txt"
    target.write_text("keep me")
    lock.unlink()
    {"symlink": lambda: lock.symlink_to(target), "directory": lock.mkdir, "fifo": lambda: os.mkfifo(lock)}[kind]()
    result = resume(cli, run)
    assert result.code == 2 and ".lock" in result.err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_out_naming_a_file_is_a_clean_error(tmp_path, cli, where):
    (tmp_path / "file").write_text("not a directory")
    result = cli("train", LENET, "--data", "digits", "--epochs", "1", "--out", tmp_path / where)
    assert result.code == 2 and "--out" in result.err and "Traceback" not in result.err
    assert (tmp_path / "file").read_text() == "not a directory"


def test_only_stale_trainer_temporaries_are_cleaned(tmp_path, monkeypatch):
    """A trainer's temporary found when the lock is taken was left by a killed holder; anything
    another process creates (an eval's, an export's, or one appearing mid-run) is not ours."""
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".last.safetensors.tmp-1-dead"
    others = [out / ".eval.json.tmp-4242-beef", out / ".netspec-export-x1y2"]
    stale.write_bytes(b"left by a SIGKILLed trainer")
    others[0].write_text("{}")
    others[1].mkdir()
    appearing = out / ".last.safetensors.tmp-999999-other"
    real_save_state = checkpoint_module.save_state

    def save_state_then_another_writer(*args, **kwargs):
        real_save_state(*args, **kwargs)
        appearing.touch(exist_ok=True)

    monkeypatch.setattr(checkpoint_module, "save_state", save_state_then_another_writer)
    train(LENET, {"data": "digits", "epochs": 1, "checkpoint_every": 10}, out=out)
    assert not stale.exists()
    assert all(p.exists() for p in [*others, appearing])
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name and p not in others] == [appearing.name]


# -- resume from damaged checkpoints -------------------------------------------------------------------
def test_a_truncated_last_checkpoint_resumes_from_best_with_a_note(run, cli):
    truncate(run / "last.safetensors")
    result = resume(cli, run)
    assert result.code == 0, result.err
    assert "last.safetensors: truncated" in result.out and "resuming from" in result.out
    assert "best.safetensors" in result.out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert load_file(run / "last.safetensors")  # rewritten whole


def test_a_truncated_last_checkpoint_with_no_resumable_fallback_exits_2_naming_it(run, cli):
    truncate(run / "last.safetensors")
    rewrite_metadata(run / "best.safetensors", state='"state-000000011.safetensors"')  # pruned long ago
    result = resume(cli, run)
    assert result.code == 2, result.out
    assert f"error: {run / 'last.safetensors'}: truncated" in result.err
    assert "state-000000011.safetensors" in result.err and "best.safetensors still load" in result.err
    assert cli("eval", run).code == 0  # best is intact for eval


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/" + STATE, "../../etc/x",
                                  "." + STATE, STATE + "\n"])
def test_state_names_from_metadata_never_leave_the_run_directory(run, cli, name):
    shutil.copy(run / STATE, run.parent / "outside.safetensors")  # a valid state, if it were followed
    (run / "sub").mkdir()
    shutil.copy(run / STATE, run / "sub" / STATE)
    shutil.copy(run / STATE, run / ("." + STATE))
    for weights in ("last", "best"):
        rewrite_metadata(run / f"{weights}.safetensors", state=json.dumps(name))
    result = resume(cli, run)
    assert result.code == 2, result.out
    assert "not following it" in result.err and "last.safetensors" in result.err


def test_a_missing_state_file_is_named(run, cli):
    (run / STATE).unlink()
    result = resume(cli, run)
    assert result.code == 2 and f"{run / STATE}: missing" in result.err
    assert cli("eval", run, "--weights", "last").code == 0  # the weights alone still evaluate


def _bad_counters(path):
    rewrite_metadata(path, counters='{"epoch": "one", "step": 44}')


def _wrong_shape_moment(path):
    tensors = load_file(path)
    tensors["optim/0/exp_avg"] = torch.zeros(3)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("damage, message", [
    (truncate, "truncated"),
    (lambda p: p.write_bytes(b"\xff" * 64), "not a safetensors file"),
    (_bad_counters, "counters `epoch`"),
    (lambda p: rewrite_metadata(p, param_groups="[{]"), "`param_groups` is not valid JSON"),
    (_wrong_shape_moment, "exp_avg"),
    (lambda p: rewrite_metadata(p, counters=json.dumps({"epoch": 1, "step": 7, "global_step": 7, "best_val_acc": 0.5,
     "steps_per_epoch": 44, "totals": {"loss": 1.0, "correct": 1, "seen": 1, "seconds": 1.0}})), "do not match"),
])
def test_a_damaged_state_file_exits_2_naming_it(run, cli, damage, message):
    damage(run / STATE)
    result = resume(cli, run)
    assert result.code == 2, result.out
    assert str(run / STATE) in result.err and message in result.err and "Traceback" not in result.err


# -- eval and export read only sound files ---------------------------------------------------------
def _header_claims(size: int):
    return lambda p: p.write_bytes(size.to_bytes(8, "little") + b"{}")


@pytest.mark.parametrize("damage, message", [
    (truncate, "truncated"),
    (lambda p: p.write_bytes(os.urandom(4096)), "safetensors"),
    (_header_claims(10**15), "header claims"),
    (lambda p: p.write_bytes(b""), "truncated: 0 bytes"),
    (lambda p: rewrite_metadata(p, mean="[0.1,"), "`mean` is not valid JSON"),
    (lambda p: rewrite_metadata(p, std='"wide"'), "`std` has the wrong type"),
    (lambda p: rewrite_metadata(p, std="[0]"), "`std` must be positive"),
    (lambda p: rewrite_metadata(p, mean="[0.1, 0.2, 0.3]"), "3 values for 1 input channels"),
    (lambda p: rewrite_metadata(p, labels="[" * 100_000 + "]" * 100_000), "`labels` is not valid JSON"),
])
@pytest.mark.parametrize("command", ["eval", "export"])
def test_damaged_weights_name_the_file_and_suggest_the_intact_one(run, cli, tmp_path, damage, message, command):
    damage(run / "best.safetensors")
    args = ["eval", run] if command == "eval" else ["export", run, "--onnx", "-o", tmp_path / "m.onnx"]
    result = cli(*args)
    assert result.code == 2, result.out
    assert f"{run / 'best.safetensors'}: " in result.err and message in result.err, result.err
    assert "use --weights last" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"[]", "not a netspec run config"),
    (b'{"train": {"lr": "fast"}}', "`train.lr`"),
    (b'{"train": {}, "overrides": [1]}', "`overrides`"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"train": {"epochs": 1}, "pad": "' + b"x" * (5 * 2**20) + b'"}', "larger than"),
    (None, "not a regular file"),  # a FIFO: must not hang
])
@pytest.mark.parametrize("command", ["resume", "eval", "export"])
def test_a_broken_config_json_is_named(run, cli, tmp_path, content, message, command):
    config = run / "config.json"
    if content is None:
        config.unlink()
        os.mkfifo(config)
    else:
        config.write_bytes(content)
    result = {"resume": lambda: resume(cli, run), "eval": lambda: cli("eval", run),
              "export": lambda: cli("export", run, "--onnx", "-o", tmp_path / "m.onnx")}[command]()
    assert result.code == 2, result.out
    assert f"{config}: " in result.err and message in result.err and "Traceback" not in result.err


def test_a_config_json_linking_outside_the_run_is_refused(run, cli, trained):
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(trained / "config.json")
    result = cli("eval", run)
    assert result.code == 2 and "symbolic link" in result.err


@pytest.mark.parametrize("command", ["resume", "eval", "export"])
def test_a_changed_spec_is_reported_as_no_longer_matching(run, cli, tmp_path, command):
    spec = run / "spec.yaml"
    spec.write_text(spec.read_text().replace("linear: 120", "linear: 100"))
    result = {"resume": lambda: resume(cli, run), "eval": lambda: cli("eval", run),
              "export": lambda: cli("export", run, "--onnx", "-o", tmp_path / "m.onnx")}[command]()
    assert result.code == 2, result.out
    assert "the spec no longer matches the checkpoint: 3 tensors differ" in result.err
    assert "linear7.weight: checkpoint (120, 400), model (100, 400)" in result.err
    assert "linear9.weight: checkpoint (84, 120), model (84, 100)" in result.err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_run_spec_that_fails_to_load_is_named(run, cli, command):
    (run / "spec.yaml").write_text("name: [unclosed\n")
    result = resume(cli, run) if command == "resume" else cli("eval", run)
    assert result.code == 2 and "spec.yaml" in result.err and "Traceback" not in result.err


def test_long_mismatch_lists_are_cut_short(trained):
    import netspec

    model = netspec.build(netspec.load(trained / "spec.yaml"))
    with pytest.raises(SpecMismatch) as info:
        check_fits(model, {f"extra{i}": (1,) for i in range(20)}, trained / "best.safetensors")
    message = info.value.diagnostics[0].message
    assert "30 tensors differ" in message and message.endswith("; and 22 more")
    assert "conv0.weight: missing from the checkpoint (model (6, 1, 5, 5))" in message


def test_weights_other_than_best_and_last_are_refused(run, cli):
    shutil.copy(run / "best.safetensors", run.parent / "elsewhere.safetensors")
    result = cli("eval", run, "--weights", "../elsewhere")
    assert result.code == 2 and "--weights" in result.err
