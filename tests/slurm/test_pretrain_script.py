"""``sbatch slurm/pretrain_1p2b.sh``, unchanged, on a real (local) Slurm with command-line
overrides only: the nano CPU recipe on 2 tasks (DP2), no GPUs. An uninterrupted job; one that
gets the warning signal mid-run, saves, requeues itself and finishes with the same losses and
W&B run; a bad config that fails once; a crashing trainer that is retried a bounded number
of times."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm.jobs import output, submit_script, wait_job
from tests.wandb_offline import offline_runs

SCRIPT = "slurm/pretrain_1p2b.sh"
STEPS = 10
# checkpoint every 4 steps; validation at step 10; W&B offline (the recipe disables it)
OVERRIDES = [f"train.steps={STEPS}", "checkpoint.interval=4", "logging.wandb_mode=offline"]
SBATCH = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0"]


def submit(slurm, out: Path, name: str, args=(), sbatch=(), **env) -> str:
    """sbatch the pretraining script on 2 tasks into ``out``; the job id."""
    return submit_script(slurm, SCRIPT, out, name, args, [*SBATCH, *sbatch], **env)


def losses(out: Path) -> tuple[list[int], list[float]]:
    path = out / "run" / "cpu_quickstart" / "metrics.jsonl"
    records = [r for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]
    return [r["step"] for r in records], [r["loss"] for r in records]


def attempts(out: Path, job_id: str) -> list[str]:
    """The script's attempt log without timestamps, e.g. 'attempt 0 exit 75 requeue'."""
    lines = (out / "run" / "jobs" / job_id / "attempts.log").read_text().splitlines()
    return [line.split(" ", 2)[2] for line in lines if " start " not in line]


def wandb_ids(out: Path) -> list[str]:
    return [p.name.rsplit("-", 1)[1] for p in sorted((out / "run" / "cpu_quickstart" / "wandb")
                                                      .glob("offline-run-*"))]


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


def test_warning_signal_saves_requeues_and_resumes(slurm, uninterrupted, tmp_path):
    # the same run, given through XM2_RECIPE and XM2_OVERRIDES instead of arguments
    job = submit(slurm, tmp_path, "xm2-preempted", XM2_RECIPE="recipes/cpu_quickstart.yaml",
                 XM2_OVERRIDES=" ".join(OVERRIDES))
    metrics = tmp_path / "run" / "cpu_quickstart" / "metrics.jsonl"
    _, before = wait_job(slurm, job, until=lambda: metrics.exists() and
                         metrics.read_text().count('"loss"') >= 5)  # step 4 saved, step 5 done
    # what --signal=URG@300 does before the time limit: SIGURG to every process of the step
    subprocess.run(["scancel", "--signal=URG", job], env=slurm.env, check=True)
    info, after = wait_job(slurm, job)
    states = before + after[1:] if after[0] == before[-1] else before + after
    log = output(tmp_path, job)
    print(f"interrupted job {job}: states {states}, restarts {info['Restarts']}")
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), \
        log[-4000:]
    stopped = int(re.search(r"stopped at step (\d+) on request", log).group(1))
    assert 5 <= stopped < STEPS
    assert f"resumed at step {stopped} from {tmp_path / 'run' / 'checkpoints'}" in log
    assert (tmp_path / "run" / "checkpoints" / f"iter_{stopped:07d}").is_dir()
    assert attempts(tmp_path, job) == ["attempt 0 exit 75 requeue", "attempt 1 exit 0 done"]

    steps, got = losses(tmp_path)
    want = losses(uninterrupted[0])[1]
    assert steps == list(range(1, STEPS + 1))  # each step logged once across both attempts
    assert got == pytest.approx(want, rel=1e-6)
    print(f"final loss: uninterrupted {want[-1]!r}, preempted and resumed {got[-1]!r}")

    ids = wandb_ids(tmp_path)  # offline W&B: one directory per attempt, the same run id
    assert len(ids) == 2 and ids[0] == ids[1]
    runs = offline_runs(tmp_path / "run" / "cpu_quickstart", ids[0])
    steps_per_attempt = [[row["_step"] for row in rows if "train/loss" in row] for rows, _ in runs]
    assert steps_per_attempt == [list(range(1, stopped + 1)), list(range(stopped + 1, STEPS + 1))]


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
