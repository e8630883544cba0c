"""The step loop: ``Trainer.fit()`` trains from the loaded step to ``train.steps``, calling its
callbacks at named points (see ``callback.py``); checkpoints, monitoring, validation and the
stop conditions are callbacks (``callbacks/``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from megatron.core import parallel_state

from xm2_megatron.checkpoint import load_checkpoint
from xm2_megatron.checkpoint.lock import lock_directory
from xm2_megatron.config import ExperimentConfig
from xm2_megatron.data.stream import StageDataStream
from xm2_megatron.runtime import Runtime
from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.state import TrainingState
from xm2_megatron.training.step import train_step

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DIVERGED = 3
EXIT_STOPPED = 75  # EX_TEMPFAIL: saved at a step boundary, to be resumed (Slurm requeue)


@dataclass(frozen=True)
class StopRequest:
    """A callback's request to end the run after the current step."""

    reason: str
    exit_code: int = EXIT_STOPPED
    save: bool = True  # checkpoint the state first (when checkpoint.dir is set)


class Trainer:
    """Runs the steps of one rank; every rank of the job runs its own Trainer in lockstep."""

    def __init__(self, cfg: ExperimentConfig, runtime: Runtime, state: TrainingState,
                 callbacks: Sequence[Callback] = ()):
        self.cfg, self.runtime, self.state = cfg, runtime, state
        self.own_callbacks = list(callbacks)
        self.callbacks = self.own_callbacks  # those of the current fit()
        self.stream = StageDataStream(cfg, parallel_state.get_data_parallel_rank(),
                                      parallel_state.get_data_parallel_world_size())
        self.seq_length = cfg.data.seq_length or cfg.model.seq_length
        self.step = 0  # optimizer steps done (skipped updates count as steps)
        self.skipped_steps = 0
        self.loaded_from: str | None = None  # the checkpoint directory the state came from
        self.loaded_state: dict = {}  # the train state saved with it
        self.wandb_run_id: str | None = None
        self.stop_request: StopRequest | None = None

    # ------------------------------------------------------------------ for callbacks

    def request_stop(self, reason: str, exit_code: int = EXIT_STOPPED, save: bool = True) -> None:
        """End the run after this step (the first request wins)."""
        if self.stop_request is None:
            self.stop_request = StopRequest(reason, exit_code, save)

    def emit(self, point: str, *args) -> None:
        """Call ``point`` (e.g. ``"on_validation"``) on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, point)(self, *args)

    def train_state(self) -> dict:
        """The plain values a checkpoint of the current step stores besides the tensors."""
        return {"stage": self.stream.stage_at(self.step - 1) if self.step else None,
                "skipped_steps": self.skipped_steps,
                "consumed_samples": self.stream.consumed_before(self.step),
                "wandb_run_id": self.wandb_run_id}

    # ------------------------------------------------------------------ the loop

    def load(self) -> None:
        """Resume: the run's own ``checkpoint.dir`` first (a requeued job), else
        ``checkpoint.load`` (a run that starts from another's weights); in each the newest
        checkpoint that loads (a damaged one is skipped with a warning)."""
        for source in (self.cfg.checkpoint.dir, self.cfg.checkpoint.load):
            if source:
                loaded = load_checkpoint(source, self.state.model, self.state.optimizer,
                                         self.state.scheduler)
                if loaded is not None:
                    self.loaded_from, self.loaded_state = str(Path(source)), loaded
                    self.step = loaded["step"]
                    self.skipped_steps = loaded.get("skipped_steps", 0)
                    return

    def fit(self, callbacks: Sequence[Callback] = ()) -> int:
        """Load the latest checkpoint, train to ``train.steps`` (or a stop request) and return
        the exit code; ``callbacks`` are added after the Trainer's own for this call."""
        self.callbacks = [*self.own_callbacks, *callbacks]
        exit_code = EXIT_FAILED
        lock = None
        try:
            lock = lock_directory(self.cfg.checkpoint.dir) if self.cfg.checkpoint.dir else None
            self.load()
            self.emit("on_fit_start")
            while self.step < self.cfg.train.steps and self.stop_request is None:
                self.emit("on_step_end", self._step())
            if self.stop_request is not None:
                self.emit("on_stop", self.stop_request)
            exit_code = self.stop_request.exit_code if self.stop_request else EXIT_OK
        finally:
            self.emit("on_fit_end", exit_code)
            if lock is not None:
                lock.release()
        return exit_code

    def _step(self) -> StepEnd:
        start = time.perf_counter()
        stage, microbatches = self.stream.microbatches(self.step)
        result = train_step(self.state.model, self.state.optimizer, self.state.scheduler,
                            microbatches)
        seconds = time.perf_counter() - start
        tokens = self.cfg.train.global_batch_size_at(self.step) * self.seq_length
        self.step += 1
        self.skipped_steps += not result.update_successful
        return StepEnd(self.step, stage, result, seconds, tokens)
