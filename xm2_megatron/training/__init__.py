"""Assembly: the training state built once, the step, and the Trainer with its callbacks."""

from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.run import run_training
from xm2_megatron.training.state import TrainingState, build_training_state
from xm2_megatron.training.trainer import (
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_STOPPED,
    StopRequest,
    Trainer,
)

__all__ = ["Callback", "EXIT_DIVERGED", "EXIT_OK", "EXIT_STOPPED", "StepEnd", "StopRequest",
           "Trainer", "TrainingState", "build_training_state", "run_training"]
