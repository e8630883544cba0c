"""``sbatch --array=0-1 slurm/windtunnel.sh`` on the real (local) Slurm: two tasks pull the
trials of one study (journal storage) on the tiny proxy; once each has completed a trial, one
of them gets the warning signal in the middle of its next trial, stops it (marked failed), requeues and goes on. Together they finish
the requested number of trials, each run once."""

import json
import subprocess
import time

import optuna
from optuna.trial import TrialState

from tests.slurm.jobs import job_info, submit_script, wait_job
from xm2_megatron.windtunnel.storage import open_storage

TRIALS = 4
SBATCH = ["--array=0-1", "--ntasks=1", "--cpus-per-task=1", "--gpus-per-node=0"]
ARGS = ["arr", "tests/windtunnel/proxy.yaml", "train.steps=120", "train.eval_interval=40"]


def _trials(journal):
    if not journal.exists():
        return []
    return optuna.load_study(study_name="arr", storage=open_storage(journal)).get_trials()


def test_two_array_tasks_share_a_study_and_survive_preemption(slurm, tmp_path):
    study_dir, journal = tmp_path / "study", tmp_path / "study" / "study.journal"
    array = submit_script(slurm, "slurm/windtunnel.sh", tmp_path, "xm2-wt", ARGS, SBATCH,
                          XM2_TRIALS=str(TRIALS), XM2_STUDY_DIR=str(study_dir),
                          XM2_SEARCH_ARGS="--seed 0 --startup-trials 2 --no-prune")
    def steps_done(trial) -> int:
        metrics = study_dir / "trials" / f"trial_{trial.number:04d}" / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return json.loads(lines[-1]).get("step", 0) if lines else 0

    def running_after_both_finished_one():
        """A trial in its first half of steps once each task has completed a trial (a signal
        then reaches it long before its last step)."""
        trials = _trials(journal)
        done = {t.user_attrs["worker"]["slurm_task"] for t in trials
                if t.state == TrialState.COMPLETE}
        started = [t for t in trials if t.state == TrialState.RUNNING and 0 < steps_done(t) <= 60]
        return started[0] if len(done) == 2 and started else None

    deadline = time.monotonic() + 300
    while (running := running_after_both_finished_one()) is None:
        assert time.monotonic() < deadline, "the two tasks did not both finish a trial"
        time.sleep(0.3)
    task = running.user_attrs["worker"]["slurm_task"]  # "<array job>_<task id>"
    # what --signal=URG@300 does before the time limit, to this task only
    subprocess.run(["scancel", "--signal=URG", task], env=slurm.env, check=True)
    infos = {}
    for index in (0, 1):
        infos[index], _ = wait_job(slurm, f"{array}_{index}", timeout=420)
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.out"))
    for info in infos.values():
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), logs[-4000:]
    preempted = int(task.rsplit("_", 1)[1])
    assert infos[preempted]["Restarts"] == "1" and infos[1 - preempted]["Restarts"] == "0"
    attempts = (study_dir / "jobs" / task / "attempts.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in attempts if " start " not in line] == \
        ["attempt 0 exit 75 requeue", "attempt 1 exit 0 done"]

    trials = _trials(journal)
    stopped = trials[running.number]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["failed_because"] == "stopped by a signal or the time limit"
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == TRIALS
    assert {t.user_attrs["worker"]["slurm_task"] for t in finished} == {f"{array}_0", f"{array}_1"}
    # each trial ran once: one run folder per trial number, none moved aside by a second run
    ran = [t for t in trials if not t.user_attrs.get("failed_because", "").startswith("surplus")]
    folders = sorted(p.name for p in (study_dir / "trials").iterdir())
    assert folders == [f"trial_{t.number:04d}" for t in ran]
    assert job_info(slurm, f"{array}_0")["ArrayJobId"] == array
