"""Where a study lives, who runs its trials, and which running trials are dead.

Storage: a file path is a SQLite database (nothing to start), a path ending in ``.journal``
is Optuna's journal file (for a shared cluster file system, where SQLite's locking is not to
be trusted), anything with ``://`` is a SQLAlchemy URL (PostgreSQL, MySQL).

A worker killed in the middle of a trial leaves it RUNNING. Optuna's own heartbeat runs only
inside ``study.optimize`` and only on SQL storages; the search drives trials with ask/tell
(to stop at exactly the requested number across workers) on any storage, so each worker
records who it is and a heartbeat of its own on its trial, and a trial is dead when its worker
process is gone from this host, when this is the requeued incarnation of its Slurm task, or
when its heartbeat is older than the grace period.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import optuna
import psutil
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

HEARTBEAT_S = 60.0  # how often a running trial says it is alive
GRACE_S = 600.0  # a running trial silent for longer is dead


def open_storage(spec: str | os.PathLike) -> BaseStorage:
    """The Optuna storage ``spec`` names (see the module docstring)."""
    spec = str(spec)
    if "://" in spec:
        return RDBStorage(spec)
    path = Path(spec).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".journal":
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    return RDBStorage(f"sqlite:///{path}")


def _slurm_task() -> str | None:
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    return env.get("SLURM_JOB_ID")


def worker_identity() -> dict:
    """This process as a trial records it: host, pid, the process's start time, Slurm task."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": psutil.Process().create_time(), "slurm_task": _slurm_task()}


def _process_alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


def _is_dead(trial: optuna.trial.FrozenTrial, me: dict, now: float, grace_s: float) -> str | None:
    """Why ``trial`` (RUNNING) is dead, or None while it may still be running."""
    worker = trial.user_attrs.get("worker")
    beat = trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp())
    if worker and worker["slurm_task"] and worker["slurm_task"] == me["slurm_task"] \
            and worker["pid"] != me["pid"]:
        return f"its Slurm task {worker['slurm_task']} was restarted"
    if worker and worker["host"] == me["host"] and worker["pid"] != me["pid"] \
            and not _process_alive(worker["pid"], worker["started"]):
        return f"its worker (pid {worker['pid']} on {worker['host']}) is gone"
    if now - beat > grace_s:
        return f"no heartbeat for {now - beat:.0f} s"
    return None


def fail_dead_trials(study: optuna.Study, storage: BaseStorage,
                     grace_s: float = GRACE_S) -> list[int]:
    """Mark the study's dead RUNNING trials FAILED (with the reason); returns their numbers."""
    me, now, failed = worker_identity(), time.time(), []
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _is_dead(trial, me, now, grace_s)
        if reason is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "failed_because", reason)
        try:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except RuntimeError:  # another worker finished or failed it meanwhile
            continue
        failed.append(trial.number)
    return failed


class Heartbeat:
    """Records ``heartbeat`` (the time) on a running trial every ``interval_s`` until stopped."""

    def __init__(self, trial: optuna.Trial, interval_s: float = HEARTBEAT_S):
        self.trial, self.interval_s = trial, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="trial-heartbeat")

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # the trial finished meanwhile, or the storage is busy: next beat
                pass

    def __enter__(self) -> Heartbeat:
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
