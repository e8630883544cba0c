"""One wind-tunnel trial: a whole training run of a proxy recipe in this process, through the
real Trainer (``run_training``), with its validation losses and where its time went."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.run import run_training


@dataclass
class TrialRun:
    """What a trial's run produced."""

    exit_code: int  # the trainer's: 0 done, 3 diverged, 75 stopped
    val_losses: dict[int, float] = field(default_factory=dict)  # step -> held-out loss
    train_seconds: float = 0.0  # spent in optimizer steps
    wall_seconds: float = 0.0  # the whole run: start-up, data, validation and steps
    metrics: Path | None = None  # the run's metrics.jsonl

    @property
    def final_loss(self) -> float | None:
        """The held-out loss after the last validation (the trainer validates after its last step)."""
        return self.val_losses[max(self.val_losses)] if self.val_losses else None


class _Recorder(Callback):
    def __init__(self, run: TrialRun):
        self.run = run

    def on_step_end(self, trainer, end: StepEnd) -> None:
        self.run.train_seconds += end.seconds

    def on_validation(self, trainer, step: int, loss: float) -> None:
        self.run.val_losses[step] = loss


def run_trial(cfg: ExperimentConfig, callbacks: Sequence[Callback] = ()) -> TrialRun:
    """Train ``cfg`` in this process (world size 1) and return what it measured."""
    run = TrialRun(exit_code=1, metrics=Path(cfg.logging.output_dir) / cfg.name / "metrics.jsonl")
    start = time.perf_counter()
    try:
        run.exit_code = run_training(cfg, [_Recorder(run), *callbacks])
    finally:
        run.wall_seconds = time.perf_counter() - start
    return run
