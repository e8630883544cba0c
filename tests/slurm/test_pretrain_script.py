"""``sbatch slurm/pretrain_1p2b.sh``, unchanged, on a real (local) single-node Slurm with
command-line overrides only: the nano CPU recipe on 2 tasks (DP2), no GPUs. An uninterrupted
job; a bad config that fails once; a crashing trainer that is retried a bounded number of
times. Preemption and resuming at another layout run on two nodes (``test_two_nodes.py``)."""

import sys
from pathlib import Path

import pytest

from tests.slurm.jobs import attempts, losses, output, submit_script, wait_job, wandb_ids

SCRIPT = "slurm/pretrain_1p2b.sh"
STEPS = 10
# checkpoint every 4 steps; validation at step 10; W&B offline (the recipe disables it)
OVERRIDES = [f"train.steps={STEPS}", "checkpoint.interval=4", "logging.wandb_mode=offline"]
SBATCH = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0"]


def submit(slurm, out: Path, name: str, args=(), sbatch=(), **env) -> str:
    """sbatch the pretraining script on 2 tasks into ``out``; the job id."""
    return submit_script(slurm, SCRIPT, out, name, args, [*SBATCH, *sbatch], **env)


@pytest.fixture(scope="module")
def uninterrupted(slurm, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    job = submit(slurm, out, "xm2-once", args=["recipes/cpu_quickstart.yaml", *OVERRIDES])
    info, states = wait_job(slurm, job)
    print(f"uninterrupted job {job}: states {states}, restarts {info['Restarts']}")
    return out, job, info


def test_job_trains_and_checkpoints(uninterrupted):
    out, job, info = uninterrupted
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "0"), \
        output(out, job)[-4000:]
    log = output(out, job)
    assert "world 2 (TP 1, PP 1, DP 2) | cpu gloo" in log
    assert f"done: {STEPS} steps" in log
    assert losses(out)[0] == list(range(1, STEPS + 1))
    assert (out / "run" / "checkpoints" / "latest").read_text().strip() == f"iter_{STEPS:07d}"
    assert attempts(out, job) == ["attempt 0 exit 0 done"]  # a finished job never requeues
    assert len(wandb_ids(out)) == 1


def test_bad_config_fails_once_without_requeue(slurm, tmp_path):
    job = submit(slurm, tmp_path, "xm2-bad", args=["recipes/cpu_quickstart.yaml",
                                                           "parallel.tensor_parallel=3"])
    info, _ = wait_job(slurm, job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("FAILED", "2:0", "0")
    assert "error: model.num_attention_heads=10 is not divisible by parallel.tensor_parallel=3" \
        in output(tmp_path, job)


def test_crashing_trainer_is_retried_a_bounded_number_of_times(slurm, tmp_path):
    # a python that validates the config but whose trainer dies with exit 1
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/bash\n[[ "$2" == xm2_megatron.train ]] && exit 1\n'
                    f'exec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    job = submit(slurm, tmp_path, "xm2-crash", args=["recipes/cpu_quickstart.yaml"],
                 XM2_PYTHON=str(shim), XM2_MAX_FAILURES="1")
    info, _ = wait_job(slurm, job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("FAILED", "1:0", "1")
    assert attempts(tmp_path, job) == ["attempt 0 exit 1 retry", "attempt 1 exit 1 stop"]
