"""Process-group and device setup: CUDA + NCCL on GPUs, CPU + gloo elsewhere.

Works under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK), under ``srun`` (SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID and the first host of the job's node list as the master),
and as a single process with no launcher.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from xm2_megatron.errors import UserError
from xm2_megatron.runtime import cpu_compat
from xm2_megatron.runtime.children import exit_with_launcher


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the job, as the launcher describes it."""

    launcher: str  # torchrun | slurm | single
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


@dataclass(frozen=True)
class Runtime:
    """The initialised process: its launch environment, device and backend."""

    env: LaunchEnv
    device: torch.device
    backend: str
    hosts: tuple[str, ...] = ()  # every rank's hostname, by rank

    def host_summary(self, tensor_parallel: int = 1) -> str | None:
        """Which ranks run on which host (and a warning when a tensor-parallel group spans
        hosts), for a run on more than one host; None on one host."""
        if len(set(self.hosts)) < 2:
            return None
        runs = []  # (host, first rank, last rank) of consecutive ranks on one host
        for rank, host in enumerate(self.hosts):
            if runs and runs[-1][0] == host and runs[-1][2] == rank - 1:
                runs[-1][2] = rank
            else:
                runs.append([host, rank, rank])
        text = "hosts: " + ", ".join(f"{host} ({_ranks(first, last)})" for host, first, last in runs)
        split = [r for r in range(0, len(self.hosts), tensor_parallel)
                 if len(set(self.hosts[r:r + tensor_parallel])) > 1]
        if split:
            text += (f"\nwarning: {len(split)} tensor-parallel group(s) span hosts (first: ranks "
                     f"{split[0]}-{split[0] + tensor_parallel - 1}); tensor parallelism belongs "
                     "inside a node: use a TP that divides the ranks per node")
        return text

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0


def _ranks(first: int, last: int) -> str:
    return f"rank {first}" if first == last else f"ranks {first}-{last}"


def first_slurm_host(nodelist: str) -> str:
    """The first hostname of a Slurm node list such as ``gpu[003-005,9],login1``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot parse the Slurm node list {nodelist!r}")
    prefix, ranges = match.groups()
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detect_launch_env(environ: Mapping[str, str] = os.environ) -> LaunchEnv:
    """Read rank, world size and rendezvous from torchrun, Slurm, or neither."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return LaunchEnv(
            launcher="torchrun",
            rank=int(environ["RANK"]),
            world_size=int(environ["WORLD_SIZE"]),
            local_rank=int(environ.get("LOCAL_RANK", 0)),
            master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(environ.get("MASTER_PORT", 29500)),
        )
    if "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
        job_id = int(environ.get("SLURM_JOB_ID", "0"))
        return LaunchEnv(
            launcher="slurm",
            rank=int(environ["SLURM_PROCID"]),
            world_size=int(environ["SLURM_NTASKS"]),
            local_rank=int(environ.get("SLURM_LOCALID", 0)),
            master_addr=environ.get("MASTER_ADDR") or first_slurm_host(nodelist or "127.0.0.1"),
            master_port=int(environ.get("MASTER_PORT", 20000 + job_id % 20000)),
        )
    return LaunchEnv(
        launcher="single",
        rank=0,
        world_size=1,
        local_rank=0,
        master_addr="127.0.0.1",
        master_port=int(environ.get("MASTER_PORT", 0)) or _free_port(),
    )


def init_runtime(
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    seed: int = 1234,
    virtual_pipeline: int | None = None,
    timeout_minutes: int = 30,
    environ: Mapping[str, str] = os.environ,
) -> Runtime:
    """Initialise torch.distributed and megatron-core's parallel state and RNG (a rank started
    by ``torchrun`` dies with it: ``children.exit_with_launcher``)."""
    from megatron.core import parallel_state, tensor_parallel as mcore_tp

    env = detect_launch_env(environ)
    exit_with_launcher(environ)
    if torch.cuda.is_available():
        backend = "nccl"
        torch.cuda.set_device(env.local_rank)
        device = torch.device("cuda", env.local_rank)
    else:
        backend = "gloo"
        device = torch.device("cpu")
        cpu_compat.apply()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend=backend,
            init_method=f"tcp://{env.master_addr}:{env.master_port}",
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tensor_parallel,
        pipeline_model_parallel_size=pipeline_parallel,
        virtual_pipeline_model_parallel_size=virtual_pipeline,
        distributed_timeout_minutes=timeout_minutes,
    )
    torch.manual_seed(seed)
    mcore_tp.model_parallel_cuda_manual_seed(seed)
    hosts: list[str | None] = [None] * env.world_size
    torch.distributed.all_gather_object(hosts, socket.gethostname())
    return Runtime(env=env, device=device, backend=backend, hosts=tuple(hosts))


def broadcast_from_rank0(value):
    """Rank 0's ``value`` on every rank (any picklable object; a collective call)."""
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def shutdown_runtime() -> None:
    """Tear down megatron's parallel state and the process group, and remove the CPU
    compatibility layer (code that runs afterwards in this process sees plain torch)."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    for name, value in vars(parallel_state).items():  # 0.16.1 leaves some groups set
        if isinstance(value, torch.distributed.ProcessGroup):
            setattr(parallel_state, name, None)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    cpu_compat.undo()


@contextlib.contextmanager
def single_process_runtime(seed: int = 1234) -> Iterator[None]:
    """megatron's parallel state at TP1/PP1 in this one process (gloo world 1 on CPU).

    An already initialised world-size-1, TP1/PP1 runtime (a test session's) is reused and
    left as it was; otherwise one is started here and torn down afterwards.
    """
    from megatron.core import parallel_state

    if torch.distributed.is_initialized():
        layout = (torch.distributed.get_world_size(),
                  parallel_state.get_tensor_model_parallel_world_size(),
                  parallel_state.get_pipeline_model_parallel_world_size())
        if layout != (1, 1, 1):
            raise UserError(f"this runs in one process; this one is part of a world of "
                            f"{layout[0]} (TP {layout[1]}, PP {layout[2]}): run it without torchrun")
        yield
        return
    init_runtime(1, 1, seed=seed, environ={})
    try:
        yield
    finally:
        shutdown_runtime()
