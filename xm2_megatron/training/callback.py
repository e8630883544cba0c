"""The points at which the :class:`~xm2_megatron.training.trainer.Trainer` calls its callbacks.

Every rank calls every callback at the same points, in list order; a callback that talks to
other ranks (a collective) must do so on every rank, and a callback that stops the run must
decide the same on every rank (e.g. from the loss, which every rank knows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xm2_megatron.training.step import StepResult

if TYPE_CHECKING:
    from xm2_megatron.training.trainer import StopRequest, Trainer


@dataclass(frozen=True)
class StepEnd:
    """One finished optimizer step: ``step`` steps are done."""

    step: int
    stage: str
    result: StepResult
    seconds: float
    tokens: int  # tokens in this step's global batch


class Callback:
    """Override the points you need; each is a no-op here."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """After the state is built and a checkpoint (if any) is loaded, before the first step."""

    def on_step_end(self, trainer: Trainer, end: StepEnd) -> None:
        """After each optimizer step (skipped updates included)."""

    def on_validation(self, trainer: Trainer, step: int, loss: float) -> None:
        """After a validation pass, with the held-out loss."""

    def on_benchmarks(self, trainer: Trainer, step: int, scores: dict[str, float]) -> None:
        """On the logging rank, after the in-loop benchmarks ran: task -> score."""

    def on_checkpoint_saved(self, trainer: Trainer, step: int, path: Path) -> None:
        """After a checkpoint of ``step`` was written (or handed to the async writer)."""

    def on_stop(self, trainer: Trainer, request: StopRequest) -> None:
        """When a callback asked the run to stop, after that step's ``on_step_end`` calls."""

    def on_fit_end(self, trainer: Trainer, exit_code: int) -> None:
        """Last, also after an exception (then ``exit_code`` is 1)."""
