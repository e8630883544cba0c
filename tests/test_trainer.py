"""The Trainer from code: a custom callback sees the named points in order and stops the run;
a stop that saves resumes to the uninterrupted run's losses; the checkpoint callback saves."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from xm2_megatron.config import load_config
from xm2_megatron.checkpoint import LATEST, CheckpointError, complete_checkpoints
from xm2_megatron.training import (
    EXIT_OK,
    EXIT_STOPPED,
    Callback,
    Trainer,
    build_training_state,
)
from xm2_megatron.training.callbacks import Checkpointer, Validation

SETUP = ("train.steps=6", "schedule.warmup_steps=2", "optimizer.use_distributed_optimizer=true",
         "train.eval_iters=1")


class Recorder(Callback):
    """Records every call; asks to stop after step ``stop_at`` (with or without a save)."""

    def __init__(self, stop_at=None, save=False):
        self.stop_at, self.save = stop_at, save
        self.calls, self.losses = [], {}

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.step))

    def on_step_end(self, trainer, end):
        self.calls.append(("step_end", end.step))
        self.losses[end.step] = end.result.loss
        if end.step == self.stop_at:
            trainer.request_stop("enough", exit_code=EXIT_STOPPED, save=self.save)

    def on_validation(self, trainer, step, loss):
        self.calls.append(("validation", step))

    def on_checkpoint_saved(self, trainer, step, path):
        self.calls.append(("checkpoint_saved", step))

    def on_stop(self, trainer, request):
        self.calls.append(("stop", request.reason))

    def on_fit_end(self, trainer, exit_code):
        self.calls.append(("fit_end", exit_code))


def _fit(cfg, runtime, callbacks):
    trainer = Trainer(cfg, runtime, build_training_state(cfg))
    return trainer, trainer.fit(callbacks)


@pytest.fixture(scope="module")
def uninterrupted(megatron_runtime):
    recorder = Recorder()
    cfg = load_config(Path(REPO) / "tests" / "distributed" / "parity.yaml", list(SETUP))
    _, code = _fit(cfg, megatron_runtime, [recorder])
    assert code == EXIT_OK
    return recorder.losses


def test_custom_callback_stops_at_step_k_and_sees_the_points_in_order(megatron_runtime,
                                                                     tiny_config):
    cfg = tiny_config(*SETUP)
    recorder = Recorder(stop_at=3)
    trainer, code = _fit(cfg, megatron_runtime, [Validation(interval=2), recorder])
    assert code == EXIT_STOPPED and trainer.step == 3
    assert recorder.calls == [
        ("fit_start", 0),
        ("step_end", 1),
        ("validation", 2), ("step_end", 2),  # the validation callback comes first in the list
        ("step_end", 3),
        ("stop", "enough"),
        ("fit_end", EXIT_STOPPED),
    ]


def test_a_saving_stop_resumes_to_the_uninterrupted_losses(megatron_runtime, tiny_config,
                                                           uninterrupted, tmp_path):
    cfg = tiny_config(*SETUP, f"checkpoint.dir={tmp_path}", "checkpoint.interval=2")
    first = Recorder(stop_at=3, save=True)
    _, code = _fit(cfg, megatron_runtime, [Checkpointer(cfg.checkpoint), first])
    assert code == EXIT_STOPPED
    # the interval save at step 2 and the stop's save at step 3, in that order
    assert [c for c in first.calls if c[0] == "checkpoint_saved"] == [
        ("checkpoint_saved", 2), ("checkpoint_saved", 3)]
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["iter_0000002", "iter_0000003"]
    assert (tmp_path / LATEST).read_text().strip() == "iter_0000003"

    second = Recorder()
    trainer, code = _fit(cfg, megatron_runtime, [Checkpointer(cfg.checkpoint), second])
    assert code == EXIT_OK and trainer.loaded_from == str(tmp_path)
    assert second.calls[0] == ("fit_start", 3) and second.calls[-1] == ("fit_end", EXIT_OK)
    assert list(second.losses) == [4, 5, 6]
    for step, loss in {**first.losses, **second.losses}.items():
        assert loss == pytest.approx(uninterrupted[step], rel=1e-6), step


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.pwrite(fd, b"pid 4242 on elsewhere since 2026-12-01 00:00:00", 0)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_on_the_same_checkpoint_dir_is_refused(megatron_runtime, tiny_config,
                                                            tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = tiny_config(*SETUP, f"checkpoint.dir={tmp_path}")
        recorder = Recorder()
        with pytest.raises(CheckpointError, match=r"is in use by another run \(pid 4242 on "
                                                  r"elsewhere since 2026-12-01 00:00:00\)"):
            _fit(cfg, megatron_runtime, [Checkpointer(cfg.checkpoint), recorder])
        assert recorder.calls == [("fit_end", 1)]  # nothing trained, nothing saved
    finally:
        holder.kill()
        holder.wait()
    recorder = Recorder(stop_at=1)  # the holder is gone: the lock went with it
    assert _fit(cfg, megatron_runtime, [recorder])[1] == EXIT_STOPPED
