"""Trainer checkpoints: the folder format, atomic save/load at any layout, and reading any
checkpoint as one model (``load_for_inference``). Imports nothing of the training loop."""

from xm2_megatron.checkpoint.format import (
    CONFIG_FILE,
    LATEST,
    RNG_FILE,
    complete_checkpoints,
    find_checkpoint,
    is_complete,
    read_checkpoint_config,
    step_dir_name,
    step_of,
)
from xm2_megatron.checkpoint.inference import (
    InferenceModel,
    checkpoint_config,
    find_step,
    load_for_inference,
    single_process_config,
    stored_shapes,
)
from xm2_megatron.checkpoint.store import load_checkpoint, save_checkpoint
from xm2_megatron.errors import CheckpointError

__all__ = [
    "CONFIG_FILE",
    "CheckpointError",
    "InferenceModel",
    "LATEST",
    "RNG_FILE",
    "checkpoint_config",
    "complete_checkpoints",
    "find_checkpoint",
    "find_step",
    "is_complete",
    "load_checkpoint",
    "load_for_inference",
    "read_checkpoint_config",
    "save_checkpoint",
    "single_process_config",
    "step_dir_name",
    "step_of",
    "stored_shapes",
]
