"""The Trainer's own callbacks, one concern each, and the default list of a recipe."""

from __future__ import annotations

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.training.callback import Callback
from xm2_megatron.training.callbacks.checkpointer import Checkpointer
from xm2_megatron.training.callbacks.divergence import StopOnDivergence
from xm2_megatron.training.callbacks.monitoring import Monitoring
from xm2_megatron.training.callbacks.stop import StopOnSignalOrTimeLimit, StopSignal
from xm2_megatron.training.callbacks.validation import Validation


def default_callbacks(cfg: ExperimentConfig) -> list[Callback]:
    """Monitoring, divergence stop, validation, in-loop benchmarks, signal/time-limit stop and
    checkpoints, as the recipe configures them. The signal handlers are installed here: create
    the list early."""
    callbacks: list[Callback] = [Monitoring(), StopOnDivergence(cfg.train.max_skipped_steps)]
    if cfg.train.eval_interval is not None:
        callbacks.append(Validation(cfg.train.eval_interval))
    if cfg.benchmarks.tasks:
        from xm2_megatron.training.callbacks.benchmarks import Benchmarks  # lm-eval, transformers

        callbacks.append(Benchmarks(cfg))
    callbacks.append(StopOnSignalOrTimeLimit(cfg.train.time_limit_minutes))
    if cfg.checkpoint.dir is not None:
        callbacks.append(Checkpointer(cfg.checkpoint))
    return callbacks


__all__ = ["Checkpointer", "Monitoring", "StopOnDivergence", "StopOnSignalOrTimeLimit",
           "StopSignal", "Validation", "default_callbacks"]
