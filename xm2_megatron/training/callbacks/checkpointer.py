"""Checkpoint policy: every ``checkpoint.interval`` steps, after the last step, and before a
stop that asks for it; optionally written in the background (``checkpoint.async_save``)."""

from __future__ import annotations

from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

from xm2_megatron.checkpoint.store import finalize_saves, save_checkpoint
from xm2_megatron.config import CheckpointConfig, config_to_dict
from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.state import parameters_gathered


class Checkpointer(Callback):
    def __init__(self, checkpoint: CheckpointConfig):
        self.config = checkpoint
        self.queue = AsyncCallsQueue() if checkpoint.async_save else None
        self.last_saved: int | None = None

    def save(self, trainer, wait: bool = False) -> None:
        """Checkpoint the current step; ``wait`` blocks until an async save is on disk."""
        if self.last_saved != trainer.step:
            state = trainer.state
            with parameters_gathered(state.model):
                path = save_checkpoint(self.config.dir, trainer.step, state.model,
                                       state.optimizer, state.scheduler, trainer.train_state(),
                                       config_to_dict(trainer.cfg), self.config.keep_last,
                                       async_queue=self.queue)
            self.last_saved = trainer.step
            pending = self.queue is not None and not wait
            if trainer.runtime.is_main:
                print(f"{'saving' if pending else 'saved'} checkpoint {path}"
                      + (" in the background" if pending else ""), flush=True)
            trainer.emit("on_checkpoint_saved", trainer.step, path)
        if wait and self.queue is not None:
            finalize_saves(self.queue, self.config.dir, blocking=True)

    def on_step_end(self, trainer, end: StepEnd) -> None:
        if self.queue is not None:
            finalize_saves(self.queue, self.config.dir)
        last = end.step == trainer.cfg.train.steps
        interval = self.config.interval
        if last or (interval is not None and end.step % interval == 0):
            self.save(trainer, wait=last)

    def on_stop(self, trainer, request) -> None:
        if request.save:
            self.save(trainer, wait=True)

    def on_fit_end(self, trainer, exit_code: int) -> None:
        if self.queue is not None:
            self.queue.close()
