"""One training run from a config, in this process: what the ``xm2-train`` entry point and
code (a wind-tunnel trial) call."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.data.mixture import check_data
from xm2_megatron.runtime import init_runtime, shutdown_runtime
from xm2_megatron.training.callback import Callback
from xm2_megatron.training.callbacks import default_callbacks
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.trainer import EXIT_DIVERGED, Trainer


def run_training(cfg: ExperimentConfig, callbacks: Sequence[Callback] = ()) -> int:
    """Check the data, start the runtime, build the state, fit with the recipe's callbacks and
    ``callbacks``, shut the runtime down; returns the exit code (0, 3 diverged, 75 stopped)."""
    check_data(cfg)
    parallel = cfg.parallel
    runtime = init_runtime(parallel.tensor_parallel, parallel.pipeline_parallel, cfg.train.seed,
                           virtual_pipeline=parallel.virtual_pipeline)
    try:
        own = default_callbacks(cfg)  # installs the stop-signal handlers before the build
        state = build_training_state(cfg)
        try:
            trainer = Trainer(cfg, runtime, state, own)
            exit_code = trainer.fit(callbacks)
        finally:
            state.release()
    finally:
        shutdown_runtime()
    if exit_code == EXIT_DIVERGED:
        print(f"error: {trainer.stop_request.reason}", file=sys.stderr)
    return exit_code
