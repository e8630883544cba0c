"""The trainer stopped (SIGKILL after a checkpoint, or SIGTERM to all its processes) and run
again continues the uninterrupted run's losses exactly, across a batch-size change and the start
of the decay, and the same offline W&B run."""

import json
import os
import signal
import subprocess

import pytest

from tests.launch import run_trainer, start_trainer, wait_for
from tests.wandb_offline import isolate_wandb, offline_runs

RECIPE = "recipes/cpu_quickstart.yaml"
SETUP = ["train.steps=9", "train.batch_size_schedule=[{step: 4, global_batch_size: 16}]",
         "schedule.warmup_steps=2", "schedule.decay_start=5", "schedule.half_life_steps=2"]


@pytest.fixture(autouse=True)
def _isolated_wandb(monkeypatch, tmp_path):
    isolate_wandb(monkeypatch, tmp_path)


def _run(*overrides):
    """The trainer on RECIPE, waited for; the environment as it is (W&B isolated above)."""
    return run_trainer(RECIPE, *overrides, env={})


def _start(*overrides, **popen):
    """The trainer on RECIPE, started; the environment as it is (W&B isolated above)."""
    return start_trainer(RECIPE, *overrides, env={}, **popen)


def _setup(tmp_path, *extra):
    """SETUP, with the checkpoints and the logs under ``tmp_path``, then ``extra``."""
    return [*SETUP, f"checkpoint.dir={tmp_path / 'ckpt'}",
            f"logging.output_dir={tmp_path / 'runs'}", *extra]


def _losses(tmp_path):
    """Steps, losses and learning rates logged over the whole run (resumes included)."""
    records = _records(tmp_path / "runs" / "cpu_quickstart" / "metrics.jsonl")
    return [r["step"] for r in records], [r["loss"] for r in records], [r["lr"] for r in records]


def _records(path):
    """The training records of a ``metrics.jsonl``."""
    with open(path) as f:
        return [r for r in map(json.loads, f) if "loss" in r]


def _assert_same_run(got, want):
    assert got[0] == want[0]  # every step logged once, in order
    assert got[1] == pytest.approx(want[1], rel=1e-6)  # losses
    assert got[2] == pytest.approx(want[2], rel=1e-12)  # learning rates


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run(*_setup(out))
    assert result.returncode == 0, result.stderr[-3000:]
    losses = _losses(out)
    assert losses[0] == list(range(1, 10))
    return losses


def test_sigkill_after_a_checkpoint_then_resume(uninterrupted, tmp_path):
    process = _start(*_setup(tmp_path, "checkpoint.interval=3"), stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
    wait_for(lambda: (tmp_path / "ckpt" / "latest").exists(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = _run(*_setup(tmp_path, "checkpoint.interval=3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed at step" in result.stdout
    _assert_same_run(_losses(tmp_path), uninterrupted)


def test_sigterm_to_every_process_saves_exits_75_and_resumes_the_same_wandb_run(
        uninterrupted, tmp_path):
    """As Slurm does on preemption or scancel, the signal reaches every process of the run:
    the trainer, the W&B service and megatron's checkpoint writers (async save on). The
    helpers must outlive it so that the trainer's save and W&B's last records complete."""
    overrides = _setup(tmp_path, "logging.wandb_mode=offline", "checkpoint.async_save=true",
                       "checkpoint.interval=2")
    process = _start(*overrides, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     start_new_session=True)
    metrics = tmp_path / "runs" / "cpu_quickstart" / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, process)
    os.killpg(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 75, err[-3000:]
    stopped = int(out.split("stopped at step ")[1].split()[0])
    assert 2 <= stopped < 9
    assert (tmp_path / "ckpt" / f"iter_{stopped:07d}").is_dir()
    result = _run(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at step {stopped}" in result.stdout
    _assert_same_run(_losses(tmp_path), uninterrupted)

    run_dir = tmp_path / "runs" / "cpu_quickstart"
    (run_id,) = {p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")}
    (first, config), (second, config_again) = offline_runs(run_dir, run_id)
    assert config["train"]["steps"] == 9 and config_again == config
    assert [h["_step"] for h in first] == list(range(1, stopped + 1))
    assert [h["_step"] for h in second] == list(range(stopped + 1, 10))
    logged = [h["train/loss"] for h in first + second]
    assert logged == pytest.approx(uninterrupted[1], rel=1e-6)


def test_branch_from_checkpoint_load_then_its_own_checkpoints(tmp_path):
    """checkpoint.load seeds a new run (a decay branch); once the run has checkpoints of its own
    it resumes from those; a damaged newest checkpoint falls back to the one before it, and
    when none loads that is one error line and exit 2."""
    def run(out, *extra):
        return _run("train.eval_interval=null", f"logging.output_dir={tmp_path / 'runs'}",
                    f"checkpoint.dir={tmp_path / out}", *extra)

    assert run("trunk", "train.steps=2").returncode == 0
    branch = run("branch", "train.steps=3", f"checkpoint.load={tmp_path / 'trunk'}")
    assert branch.returncode == 0, branch.stderr[-3000:]
    assert f"resumed at step 2 from {tmp_path / 'trunk'}" in branch.stdout
    # the branch has the trunk's name: the trunk's run folder is moved aside, not overwritten
    run_dir = tmp_path / "runs" / "cpu_quickstart"
    (archived,) = (tmp_path / "runs").glob("cpu_quickstart.*")
    assert f"note: {run_dir} held an earlier run that this one does not resume: moved to " \
           f"{archived}" in branch.stdout
    assert [r["step"] for r in _records(archived / "metrics.jsonl")] == [1, 2]
    again = run("branch", "train.steps=4", f"checkpoint.load={tmp_path / 'trunk'}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed at step 3 from {tmp_path / 'branch'}" in again.stdout
    assert "note:" not in again.stdout  # resuming its own checkpoint continues its folder
    assert [r["step"] for r in _records(run_dir / "metrics.jsonl")] == [3, 4]

    for shard in (tmp_path / "branch" / "iter_0000004").glob("*.distcp"):
        shard.write_bytes(b"damaged")
    fallback = run("branch", "train.steps=5")  # the newest is damaged: the one before it loads
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert f"resumed at step 3 from {tmp_path / 'branch'}" in fallback.stdout
    assert "skipping" in fallback.stderr and "iter_0000004: cannot load it" in fallback.stderr
    for shard in (tmp_path / "branch").glob("iter_*/*.distcp"):
        shard.write_bytes(b"damaged")
    damaged = run("branch", "train.steps=6")
    assert damaged.returncode == 2
    (line,) = damaged.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "cannot load it" in line
