"""Launcher detection: torchrun, srun, or a single process."""

import pytest

from xm2_megatron.runtime import detect_launch_env
from xm2_megatron.runtime.distributed import first_slurm_host


def test_torchrun_environment():
    env = detect_launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                             "MASTER_ADDR": "node7", "MASTER_PORT": "29400"})
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("torchrun", 3, 4, 1)
    assert (env.master_addr, env.master_port) == ("node7", 29400)


def test_slurm_environment_uses_first_node_and_job_port():
    env = detect_launch_env({"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                             "SLURM_JOB_NODELIST": "gpu[003-004,010],cpu1", "SLURM_JOB_ID": "123456"})
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("slurm", 9, 16, 1)
    assert env.master_addr == "gpu003"
    assert env.master_port == 20000 + 123456 % 20000


def test_slurm_step_nodelist_and_explicit_master_win():
    env = detect_launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "a[1-9]",
                             "SLURM_STEP_NODELIST": "b[5-6]", "MASTER_PORT": "1234"})
    assert (env.master_addr, env.master_port) == ("b5", 1234)
    env = detect_launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "a1",
                             "MASTER_ADDR": "head"})
    assert env.master_addr == "head"


def test_torchrun_wins_over_slurm():
    """torchrun started inside an allocation: its variables describe this process."""
    env = detect_launch_env({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"})
    assert (env.launcher, env.rank) == ("torchrun", 1)


def test_single_process_without_launcher():
    env = detect_launch_env({})
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("single", 0, 1, 0)
    assert env.master_port > 0


@pytest.mark.parametrize("nodelist,first", [
    ("node1", "node1"), ("node[07-09]", "node07"), ("gpu-a[3,5-6],gpu-b1", "gpu-a3"),
    ("login2,login3", "login2"),
])
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


def _runtime(hosts):
    import torch

    from xm2_megatron.runtime import Runtime

    env = detect_launch_env({})
    return Runtime(env=env, device=torch.device("cpu"), backend="gloo", hosts=tuple(hosts))


def test_host_summary_groups_ranks_and_flags_tensor_parallel_across_hosts():
    assert _runtime(["a", "a"]).host_summary(2) is None  # one host: nothing to say
    two = _runtime(["n1", "n1", "n2", "n2"])
    assert two.host_summary(2) == "hosts: n1 (ranks 0-1), n2 (ranks 2-3)"
    warned = two.host_summary(4).splitlines()
    assert warned[0] == "hosts: n1 (ranks 0-1), n2 (ranks 2-3)"
    assert warned[1].startswith("warning: 1 tensor-parallel group(s) span hosts (first: ranks 0-3)")
    cyclic = _runtime(["n1", "n2", "n1", "n2"])
    assert cyclic.host_summary(1) == "hosts: n1 (rank 0), n2 (rank 1), n1 (rank 2), n2 (rank 3)"
    assert "2 tensor-parallel group(s) span hosts (first: ranks 0-1)" in cyclic.host_summary(2)
