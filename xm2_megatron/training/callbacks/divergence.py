"""Stop with exit 3 after ``train.max_skipped_steps`` consecutive steps whose loss or gradient
was non-finite (their updates were skipped on every rank, see ``step.train_step``)."""

from __future__ import annotations

from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.trainer import EXIT_DIVERGED


class StopOnDivergence(Callback):
    def __init__(self, max_skipped_in_a_row: int):
        self.max_skipped_in_a_row = max_skipped_in_a_row
        self.in_a_row = 0

    def on_step_end(self, trainer, end: StepEnd) -> None:
        self.in_a_row = 0 if end.result.update_successful else self.in_a_row + 1
        if self.in_a_row >= self.max_skipped_in_a_row:
            trainer.request_stop(
                f"stopping at step {end.step}: {self.in_a_row} consecutive steps had a "
                f"non-finite loss or gradient (loss {end.result.loss}); no update was applied in "
                f"them (train.max_skipped_steps={self.max_skipped_in_a_row})",
                exit_code=EXIT_DIVERGED, save=False)
