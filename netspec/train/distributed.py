"""Distributed training through torch.distributed's launcher: one machine or several.

`netspec train --nproc K [--nnodes N --node-rank R --master-addr A --master-port P] [--max-restarts M]`
is the launcher: node 0 creates (or, resuming, finds) the run directory and holds its lock
(netspec.train.runlock), then every node runs `python -m torch.distributed.run` with its K workers,
each running the command line the caller names (the CLI gives its own `-m netspec.cli train ...`,
without the launcher's options; node 0's with `--out RUN_DIR`). One machine rendezvouses
`--standalone`; several through the c10d rendezvous at A:P, hosted by node 0. c10d numbers the
machines in its own order, so each worker takes global rank R·K + local rank (its launcher's
--node-rank, exchanged through the launcher's store before the group is made): rank 0 is on
node 0, where the run directory is, and only rank 0 writes it.

A worker may also be started by someone else's `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT in its environment) or by SLURM's `srun` (SLURM_PROCID, SLURM_NTASKS,
SLURM_LOCALID; MASTER_ADDR or the first host of SLURM_NODELIST): it joins that group
(`group_from_env`). After joining, rank 0 settles the run directory and whether to resume, and
tells the others (`joined_run`): a restarted worker (TORCHELASTIC_RESTART_COUNT > 0) resumes the
run from its last checkpoint by itself. Resuming on another node than node 0 reads the run
directory too, so resumes and restarts across machines need it on a filesystem they share.

Every worker sees the same global batch order and takes its slice (netspec.train.loop).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Mapping

from netspec.errors import NetspecError, OptionError, RunError, printable

MAX_NNODES = 4096  # --nnodes: machines in one rendezvous (a typo is not a cluster); bounds --node-rank too
MAX_RESTARTS = 100  # --max-restarts: a run failing more often than this is not going to finish
MAX_HOST_CHARS = 253  # --master-addr, MASTER_ADDR, SLURM_NODELIST's first host: a DNS name's longest
DEFAULT_PORT = 29500  # torchrun's own default --master-port
NODE_RANK_ENV = "NETSPEC_NODE_RANK"  # the launcher's --node-rank, for its workers
STORE_TIMEOUT = timedelta(seconds=300)  # the workers exchanging their node ranks (all past the rendezvous)
MAX_PLAN_BYTES = 65_536  # what rank 0 tells the others (a path and two flags); bounds what they accept


@dataclass(frozen=True)
class Nodes:
    """The launcher's options: where this machine's processes stand in the run."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = DEFAULT_PORT
    max_restarts: int = 0

    @property
    def launches(self) -> bool:
        """Whether this command starts torch's launcher (else it trains in this process)."""
        return self.nproc > 1 or self.nnodes > 1 or self.max_restarts > 0

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes

    def check(self, env: Mapping[str, str] = os.environ) -> None:
        """Refuse a combination that cannot start (OptionError naming the option, exit 2)."""
        if not 1 <= self.nnodes <= MAX_NNODES:
            raise OptionError.at(None, "--nnodes", f"expected 1 to {MAX_NNODES} machines, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise OptionError.at(None, "--node-rank", f"node rank {self.node_rank} is not below --nnodes "
                                 f"{self.nnodes}", f"number the machines 0 to {self.nnodes - 1}")
        if self.nnodes > 1 and not self.master_addr:
            raise OptionError.at(None, "--master-addr", f"--nnodes {self.nnodes} needs node 0's address",
                                 "give --master-addr HOST (the same on every machine)")
        if self.master_addr is not None:
            check_host(self.master_addr, "--master-addr")
        if not 1 <= self.master_port <= 65535:
            raise OptionError.at(None, "--master-port", f"expected a port from 1 to 65535, got {self.master_port}")
        if not 0 <= self.max_restarts <= MAX_RESTARTS:
            raise OptionError.at(None, "--max-restarts", f"expected 0 to {MAX_RESTARTS}, got {self.max_restarts}")
        if self.launches and _torchrun(env):
            raise OptionError.at(None, "--nproc" if self.nproc > 1 else "--nnodes" if self.nnodes > 1 else
                                 "--max-restarts", f"this process is already rank {printable(env.get('RANK'), 10)}"
                                 " of a group torch's launcher started; it cannot launch another",
                                 "give the processes, machines and restarts to torchrun, not to netspec train")

    def torchrun_args(self, name: str) -> list[str]:
        """torch.distributed.run's options before the worker's command line."""
        if self.nnodes == 1 and self.master_addr is None:
            where = ["--standalone"]
        else:
            host = f"[{self.master_addr}]" if ":" in self.master_addr else self.master_addr
            where = [f"--nnodes={self.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{self.master_port}",
                     f"--rdzv-id=netspec-{name}", f"--rdzv-conf=is_host={'true' if self.node_rank == 0 else 'false'}"]
        return [*where, f"--nproc-per-node={self.nproc}", f"--max-restarts={self.max_restarts}"]


def check_host(host: str, where: str) -> str:
    """A host name or address as given: printable, no spaces, not absurdly long."""
    if not host or len(host) > MAX_HOST_CHARS or not re.fullmatch(r"[A-Za-z0-9._:%\[\]-]+", host):
        raise OptionError.at(None, where, f"`{printable(host, 60)}` is not a host name or address")
    return host


def launch(name: str, worker: list[str], nodes: Nodes, out: Path | None, resume: bool) -> int:
    """On node 0, make (or, resuming, find) the run directory of the spec `name`; run this
    machine's workers and return torchrun's exit status; `worker` is the command line after
    `python` (`-m module args...`). The other nodes' workers learn the run directory from rank 0."""
    from netspec.train.rundir import new_run_dir, run_to_resume
    from netspec.train.runlock import RunLock, launcher_env

    if nodes.node_rank == 0:
        # The launcher holds the run's lock for the whole group; torchrun gets the descriptor too,
        # so the lock outlives a killed launcher while the workers still run (and restart).
        run_dir, lock = run_to_resume(name, out) if resume else new_run_dir(name, out)
        worker = [*worker, "--out", str(run_dir)]
    else:
        lock = RunLock(Path("."), None)
    command = [sys.executable, "-m", "torch.distributed.run", *nodes.torchrun_args(name), *worker]
    env = launcher_env(lock)
    if nodes.nnodes > 1:
        env[NODE_RANK_ENV] = str(nodes.node_rank)
    try:
        return subprocess.call(command, env=env, pass_fds=(lock.fd,) if lock.held else ())
    finally:
        lock.release()


# -- joining a group ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """This process's place in a group, as its launcher's environment says."""

    rank: int
    world: int
    local_rank: int
    master_addr: str
    master_port: int
    restart: int = 0  # TORCHELASTIC_RESTART_COUNT: 0 on the first attempt
    launcher: str = "torchrun"  # torchrun | slurm


def _torchrun(env: Mapping[str, str]) -> bool:
    return "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "WORLD_SIZE" in env)


def group_from_env(env: Mapping[str, str]) -> Group | None:
    """The group torchrun (or torch's elastic agent) or SLURM started this process in; None
    when neither did (one process). torchrun's variables win over SLURM's (torchrun under srun)."""
    if _torchrun(env):
        rank, world = _int(env, "RANK", 0), _int(env, "WORLD_SIZE", 1)
        return _checked(Group(rank, world, _int(env, "LOCAL_RANK", rank),
                              check_host(env.get("MASTER_ADDR", "127.0.0.1"), "environment MASTER_ADDR"),
                              _int(env, "MASTER_PORT", DEFAULT_PORT), _int(env, "TORCHELASTIC_RESTART_COUNT", 0)))
    if "SLURM_PROCID" in env and _int(env, "SLURM_NTASKS", 1) > 1:
        addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST")
                                                    or env.get("SLURM_JOB_NODELIST") or "")
        return _checked(Group(_int(env, "SLURM_PROCID", 0), _int(env, "SLURM_NTASKS", 1),
                              _int(env, "SLURM_LOCALID", 0), check_host(addr, "environment SLURM_NODELIST"),
                              _int(env, "MASTER_PORT", DEFAULT_PORT), 0, "slurm"))
    return None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[07-09,12],cpu3` → `gpu07` (what `scontrol show
    hostnames` prints first)."""
    text = nodelist.strip()[:4096]
    while True:
        m = re.match(r"([^,\[]*)\[([^\]]*)\]", text)
        if m is None:
            return text.split(",", 1)[0]
        first = m.group(2).split(",", 1)[0].split("-", 1)[0]
        text = m.group(1) + first + text[m.end():]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise OptionError.at(None, f"environment {name}", f"expected a number, got `{printable(value, 20)}`")
    return int(value)


def _checked(group: Group) -> Group:
    if not (1 <= group.world and 0 <= group.rank < group.world):
        raise OptionError.at(None, "environment RANK", f"rank {group.rank} is not below the world size {group.world}")
    if not 1 <= group.master_port <= 65535:
        raise OptionError.at(None, "environment MASTER_PORT", f"{group.master_port} is not a port")
    return group


def init_process_group() -> Group | None:
    """Join the group this process's launcher set up (nothing for a single process): in node
    order under netspec's own launcher, and with the variables torch reads (SLURM's translated)."""
    import torch
    import torch.distributed as dist

    group = group_from_env(os.environ)
    if group is None or group.world == 1 or dist.is_initialized():
        return group
    if NODE_RANK_ENV in os.environ:
        store = dist.TCPStore(group.master_addr, group.master_port, is_master=False, timeout=STORE_TIMEOUT)
        rank = rank_in_node_order(store, group, _int(os.environ, NODE_RANK_ENV, 0), _int(os.environ, "GROUP_RANK", 0))
        group = replace(group, rank=rank)
    os.environ.update(RANK=str(group.rank), WORLD_SIZE=str(group.world), LOCAL_RANK=str(group.local_rank),
                      MASTER_ADDR=group.master_addr, MASTER_PORT=str(group.master_port))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return group


def rank_in_node_order(store, group: Group, node_rank: int, machine: int) -> int:
    """This worker's rank once the workers are ordered by (its launcher's --node-rank, torchrun's
    rank), exchanged through `store` (the elastic agent's); `machine` is the agent's number
    (GROUP_RANK). Two machines given one --node-rank: the same error on every worker."""
    prefix = f"netspec/node-rank/attempt_{group.restart}/"
    store.set(prefix + str(group.rank), f"{node_rank} {machine}")
    keys = [prefix + str(r) for r in range(group.world)]
    store.wait(keys)
    places = [tuple(int(v) for v in store.get(k).decode().split()) for k in keys]
    machines_of: dict[int, set[int]] = {}
    for node, machine_id in places:
        machines_of.setdefault(node, set()).add(machine_id)
    shared = sorted(node for node, ids in machines_of.items() if len(ids) > 1)
    if shared:
        raise OptionError.at(None, "--node-rank", f"{len(machines_of[shared[0]])} machines were started with "
                             f"--node-rank {shared[0]}", "give each machine its own, 0 to --nnodes - 1")
    order = sorted(range(group.world), key=lambda r: (places[r][0], r))
    return order.index(group.rank)


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group() -> Iterator[Group | None]:
    """In the group the launcher set up for the duration (None for a single process), left even on an error."""
    try:
        yield init_process_group()
    finally:
        shutdown()


# -- the run a group trains --------------------------------------------------------------------------


@dataclass
class RunPlan:
    """What every process of a group trains: rank 0's run directory, and whether it resumes."""

    out: Path | None
    resume: bool
    init_from: str | None
    lock: object = None  # a RunLock rank 0 took here for the group (launched without netspec's launcher)
    restarted: bool = False  # resuming because torch's launcher restarted the workers


@contextmanager
def joined_run(group: Group | None, spec: Path, set_vars: list[str], out: Path | None, resume: bool,
               init_from: str | None) -> Iterator[RunPlan]:
    """The run this group trains, as rank 0 settles it: a restarted worker resumes `out` from its
    last checkpoint; a group started without --out trains the run directory rank 0 makes."""
    plan, failure = RunPlan(out, resume, init_from), None
    if group is not None and group.rank == 0:
        try:
            plan = _settle(group, spec, set_vars, plan)
        except NetspecError as e:
            failure = e
    if group is not None and group.world > 1:
        told = _broadcast({"out": None if plan.out is None else str(plan.out), "resume": plan.resume,
                           "restarted": plan.restarted, "failed": failure is not None})
        if failure is None and told["failed"]:
            raise RunError.at(None, f"rank {group.rank}", "rank 0 could not set up the run; its error says why")
        restarted = bool(told["restarted"])  # a resume: the weights come from the run's checkpoint
        plan = RunPlan(None if told["out"] is None else Path(told["out"]), bool(told["resume"]),
                       None if restarted else init_from, plan.lock, restarted)
    if failure is not None:
        raise failure
    try:
        yield plan
    finally:
        if plan.lock is not None:
            plan.lock.release()


def _settle(group: Group, spec: Path, set_vars: list[str], plan: RunPlan) -> RunPlan:
    from netspec.lang.spec import load
    from netspec.run import WEIGHTS
    from netspec.train.rundir import new_run_dir, run_to_resume
    from netspec.train.runlock import LAUNCHER_ENV

    if plan.out is None and _int(os.environ, "TORCHELASTIC_MAX_RESTARTS", 0) > 0:
        raise OptionError.at(None, "--out", "a restarted worker resumes its run from --out RUN_DIR",
                             "give --out RUN_DIR when torchrun may restart the workers (--max-restarts)")
    if group.restart and plan.out is not None:
        if any((plan.out / f"{w}.safetensors").exists() for w in WEIGHTS):
            print(f"restart {group.restart}: resuming {plan.out} from its last checkpoint", file=sys.stderr, flush=True)
            return RunPlan(plan.out, True, None, restarted=True)
        print(f"restart {group.restart}: {plan.out} has no checkpoint yet; starting it again", file=sys.stderr,
              flush=True)
    if plan.out is not None or group.world == 1:
        return plan
    # Started by torchrun or srun without --out: rank 0 makes the run directory here, so that it can
    # tell the others where it is, and holds its lock as netspec's launcher would.
    name = load(spec, overrides=set_vars).name
    run_dir, lock = run_to_resume(name, None) if plan.resume else new_run_dir(name, None)
    if lock.held:
        os.environ[LAUNCHER_ENV] = str(os.getpid())
    return RunPlan(run_dir, plan.resume, plan.init_from, lock)


def _broadcast(message: dict) -> dict:
    """Rank 0's `message` (JSON) on every rank."""
    import torch
    import torch.distributed as dist

    on_cpu = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")  # NCCL: GPU tensors only
    data = json.dumps(message).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, 0, group=on_cpu)
    if not 0 < size.item() <= MAX_PLAN_BYTES:
        raise RunError.at(None, "distributed", f"rank 0 sent {size.item()} bytes of settings")
    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(int(size), dtype=torch.uint8)
    dist.broadcast(buffer, 0, group=on_cpu)
    return json.loads(bytes(buffer.tolist()).decode())
