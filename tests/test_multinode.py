"""Multi-node training: two `netspec train --nnodes 2` machines on 127.0.0.1 (c10d rendezvous, gloo,
one process each) take the same steps as one process with the same global batch; the group
settings a torchrun or SLURM launch leaves in the environment are honoured; bad combinations are
refused naming the option; an elastic restart resumes the run from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from safetensors.torch import load_file

from netspec.errors import OptionError
from netspec.train.distributed import Group, Nodes, first_host, group_from_env, rank_in_node_order
from tests.conftest import ROOT, SPECS

# 1 epoch of digits at global batch 64 (22 steps); SGD, no augmentation, no BatchNorm, as in
# tests/test_train_distributed.py: the runs must agree whatever the number of processes.
ARGS = ["train", str(SPECS / "lenet.yaml"), "--data", "digits", "--epochs", "1", "--batch-size", "64",
        "--optimizer", "sgd", "--lr", "0.05", "--pad", "0"]
TIMEOUT = 240  # seconds for any one subprocess: a rendezvous that never completes fails, not hangs


def command(*extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *ARGS, *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def max_difference(a: Path, b: Path) -> float:
    ours, theirs = load_file(a / "last.safetensors"), load_file(b / "last.safetensors")
    assert ours.keys() == theirs.keys()
    return max((ours[k] - theirs[k]).abs().max().item() for k in ours)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The reference: one process, trained in this one (no launcher)."""
    from netspec.cli import main

    out = tmp_path_factory.mktemp("single") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_two_nodes_match_one_process_with_the_same_global_batch(single, tmp_path):
    port, out = free_port(), tmp_path / "run"
    nodes = ["--nnodes", "2", "--nproc", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    # node 1 first: it waits for node 0's rendezvous store; node 0 alone is told the run directory
    second = subprocess.Popen(command(*nodes, "--node-rank", "1"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = subprocess.run(command(*nodes, "--node-rank", "0", "--out", str(out)), cwd=ROOT,
                               capture_output=True, text=True, timeout=TIMEOUT)
        second_out, second_err = second.communicate(timeout=TIMEOUT)
    finally:
        second.kill()
        second.wait()
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second_out + second_err
    assert "×2 processes" in first.stdout  # one group of two, not two runs of one
    assert "training" not in second_out  # rank 1 prints nothing of the run and writes nothing
    assert max_difference(out, single) <= 1e-6  # measured: 3e-8 (the gradients summed in another order)
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def workers_of(run_dir: Path) -> list[int]:
    """The pids of the `python -m netspec.cli train ... --out run_dir` workers torchrun started."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"netspec.cli" in argv and b"torch.distributed.run" not in argv and str(run_dir).encode() in argv:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the worker to kill through /proc")
def test_a_killed_worker_restarts_and_resumes_from_the_last_checkpoint(single, tmp_path):
    out = tmp_path / "run"
    # a checkpoint every step: the worker is killed a few steps into the epoch, after one
    launcher = subprocess.Popen(command("--nproc", "1", "--max-restarts", "1", "--checkpoint-every", "1",
                                        "--out", str(out)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        # last.safetensors is written after the state file it names: then the run is resumable
        while not (out / "last.safetensors").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = workers_of(out)
        assert launcher.poll() is None and len(workers) == 1, "the run ended before its worker could be killed"
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = launcher.communicate(timeout=TIMEOUT)
    finally:
        launcher.kill()
        launcher.wait()
    assert launcher.returncode == 0, stdout + stderr
    assert "restart 1: resuming" in stderr
    resumes = [json.loads(line) for line in (out / "resumes.jsonl").read_text().splitlines()]
    assert len(resumes) == 1 and 0 < resumes[0]["global_step"] < 22  # from a checkpoint inside the epoch
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert max_difference(out, single) == 0  # bit for bit as if never interrupted (measured: 0)


# -- the launch settings, unit by unit ---------------------------------------------------------------

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29411",
            "TORCHELASTIC_RUN_ID": "job", "TORCHELASTIC_RESTART_COUNT": "2"}
SLURM = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
         "SLURM_NODELIST": "gpu[07-09,12],cpu3"}


def test_a_torchrun_launch_is_joined_as_its_environment_says():
    assert group_from_env(TORCHRUN) == Group(3, 4, 1, "10.0.0.7", 29411, 2, "torchrun")


def test_an_srun_launch_is_joined_with_the_first_host_of_its_node_list():
    assert group_from_env(SLURM) == Group(5, 8, 1, "gpu07", 29500, 0, "slurm")
    assert group_from_env({**SLURM, "MASTER_ADDR": "head", "MASTER_PORT": "4000"}).master_addr == "head"
    # torchrun started under srun: torchrun's variables are the group's
    assert group_from_env({**SLURM, **TORCHRUN}).rank == 3


def test_a_single_process_has_no_group():
    assert group_from_env({}) is None
    assert group_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None  # one srun task


@pytest.mark.parametrize("nodelist, host", [("n1", "n1"), ("a,b", "a"), ("node[003-010]", "node003"),
                                            ("rack[2-3]-n[5,7]", "rack2-n5"), ("x[9],y", "x9")])
def test_slurm_node_lists(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.parametrize("env, where", [({**TORCHRUN, "RANK": "4"}, "environment RANK"),
                                        ({**TORCHRUN, "RANK": "x"}, "environment RANK"),
                                        ({**TORCHRUN, "MASTER_PORT": "70000"}, "environment MASTER_PORT"),
                                        ({**TORCHRUN, "MASTER_ADDR": "a b"}, "environment MASTER_ADDR")])
def test_a_broken_launch_environment_is_refused_naming_the_variable(env, where):
    with pytest.raises(OptionError) as e:
        group_from_env(env)
    assert e.value.diagnostics[0].where == where


def test_the_launcher_uses_c10d_at_node_0_with_restarts():
    args = Nodes(2, 3, 1, "10.0.0.7", 29411, 2).torchrun_args("lenet5")
    assert "--rdzv-backend=c10d" in args and "--rdzv-endpoint=10.0.0.7:29411" in args
    assert "--nnodes=3" in args and "--nproc-per-node=2" in args and "--max-restarts=2" in args
    assert "--rdzv-conf=is_host=false" in args  # node 1 does not host the rendezvous
    assert "--standalone" in Nodes(2).torchrun_args("lenet5")


@pytest.mark.parametrize("extra, option", [
    (["--nnodes", "2", "--node-rank", "2", "--master-addr", "127.0.0.1"], "--node-rank"),
    (["--nnodes", "2"], "--master-addr"),
    (["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", "70000"], "--master-port"),
    (["--nnodes", "2", "--master-addr", "no such;host"], "--master-addr"),
])
def test_bad_combinations_exit_2_naming_the_option(cli, tmp_path, extra, option):
    done = cli(*ARGS, "--out", tmp_path / "run", *extra)
    assert done.code == 2, done.err
    assert option in done.err and "Traceback" not in done.err
    assert not (tmp_path / "run").exists()  # refused before anything is made or launched


def test_launcher_options_inside_a_torchrun_group_are_refused():
    with pytest.raises(OptionError) as e:
        Nodes(nproc=2).check(TORCHRUN)
    assert e.value.diagnostics[0].where == "--nproc"
    Nodes().check(TORCHRUN)  # joining it is what a plain `netspec train` does


def node_order(places: list[tuple[int, int]]) -> list:
    """What each of len(places) workers (torchrun ranks 0.., each at (--node-rank, machine)) gets
    from rank_in_node_order through one real TCPStore: its new rank, or the error it raised."""
    from torch.distributed import TCPStore

    port = free_port()
    server = TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=30))

    def worker(rank: int):
        client = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=30))
        try:
            return rank_in_node_order(client, Group(rank, len(places), 0, "127.0.0.1", port), *places[rank])
        except OptionError as e:
            return e.diagnostics[0].where

    with ThreadPoolExecutor(len(places)) as pool:
        result = list(pool.map(worker, range(len(places))))
    del server
    return result


def test_workers_are_numbered_node_by_node_whatever_order_c10d_chose():
    # c10d numbered node 1's machine first: its two workers were ranks 0 and 1
    assert node_order([(1, 0), (1, 0), (0, 1), (0, 1)]) == [2, 3, 0, 1]


def test_two_machines_with_one_node_rank_are_refused_on_every_worker():
    assert node_order([(0, 0), (1, 1), (1, 2)]) == ["--node-rank"] * 3
