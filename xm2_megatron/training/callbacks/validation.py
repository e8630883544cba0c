"""Held-out loss on the current stage's validation split every ``train.eval_interval`` steps
and after the last step; reported to the other callbacks through ``on_validation``."""

from __future__ import annotations

from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.state import parameters_gathered
from xm2_megatron.training.step import forward_backward


class Validation(Callback):
    def __init__(self, interval: int):
        self.interval = interval

    def on_step_end(self, trainer, end: StepEnd) -> None:
        if end.step % self.interval == 0 or end.step == trainer.cfg.train.steps:
            with parameters_gathered(trainer.state.model):
                loss = forward_backward(trainer.state.model,
                                        trainer.stream.validation_microbatches(end.stage),
                                        forward_only=True)
            trainer.emit("on_validation", end.step, loss)
