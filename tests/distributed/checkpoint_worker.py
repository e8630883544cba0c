"""Train the tiny parity model for a few steps, saving and/or resuming a checkpoint
(run under torchrun, or alone as one process).

Writes ``{"losses": {step: loss}, "lrs": {step: lr}, "restored": train_state, "rng_draws":
{step: draws right after saving or loading step}}`` to ``--out`` (rank 0). ``--async-save`` writes through megatron's async request queue. With
``--hang-in-commit`` the save of step ``--save-at`` stops for good after the
dist save, before the rename (the SIGKILL test kills it there).
"""

import argparse
import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

from xm2_megatron.config import config_to_dict, load_config
from xm2_megatron.data.synthetic import rank_microbatches
from xm2_megatron.runtime import init_runtime, shutdown_runtime
from xm2_megatron import checkpoint
from xm2_megatron.checkpoint import store
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.step import train_step

RECIPE = Path(__file__).with_name("parity.yaml")
# warmup over steps 0-3, decay from step 4: a resume at step 3 crosses both ends
SCHEDULE = ["schedule.warmup_steps=4", "schedule.decay_start=4", "schedule.half_life_steps=2"]


def _hang_in_commit(ready: Path):
    def commit(tmp, final, keep_last):
        ready.write_text(str(tmp))
        time.sleep(600)

    store.commit = commit


def _rng_draws() -> list[float]:
    """One draw from each generator a checkpoint restores."""
    with tensor_parallel.get_cuda_rng_tracker().fork():
        tracked = torch.rand(1).item()
    return [random.random(), float(np.random.rand()), torch.rand(1).item(), tracked]


def _microbatches(cfg, consumed: int) -> list[dict]:
    return rank_microbatches(
        consumed, cfg.train.global_batch_size, cfg.train.micro_batch_size,
        parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size(),
        cfg.model.seq_length, cfg.model.vocab_size, cfg.data.seed,
    )


def run(args):
    overrides = [f"parallel.tensor_parallel={args.tp}", f"parallel.pipeline_parallel={args.pp}",
                 f"optimizer.use_distributed_optimizer={args.distopt}", *SCHEDULE, *args.overrides]
    cfg = load_config(RECIPE, overrides)
    init_runtime(args.tp, args.pp, seed=cfg.train.seed,
                 virtual_pipeline=cfg.parallel.virtual_pipeline)
    cfg.validate(world_size=torch.distributed.get_world_size())
    model, optimizer, scheduler = build_training_state(cfg)
    state = {"step": 0, "stage": "stable", "consumed_samples": {"stable": 0}, "wandb_run_id": "abc"}
    restored, draws = None, {}
    if args.load:
        restored = checkpoint.load_checkpoint(args.load, model, optimizer, scheduler)
        state = copy.deepcopy(restored)
        draws[state["step"]] = _rng_draws()
    queue = AsyncCallsQueue() if args.async_save else None
    losses, lrs = {}, {}
    for step in range(state["step"], args.steps):
        batch = _microbatches(cfg, state["consumed_samples"]["stable"])
        result = train_step(model, optimizer, scheduler, batch)
        losses[step], lrs[step] = result.loss, result.lr
        state["step"] = step + 1
        state["consumed_samples"]["stable"] += cfg.train.global_batch_size
        if state["step"] in args.save_at:
            if args.hang_in_commit and state["step"] == max(args.save_at):
                _hang_in_commit(Path(args.out).with_suffix(".ready"))
            checkpoint.save_checkpoint(args.save, state["step"], model, optimizer, scheduler,
                                       state, config_to_dict(cfg), keep_last=args.keep_last,
                                       async_queue=queue)
            draws[state["step"]] = _rng_draws()
        if queue is not None:
            queue.maybe_finalize_async_calls(blocking=False)
    if queue is not None:
        queue.close()
    if torch.distributed.get_rank() == 0:
        Path(args.out).write_text(json.dumps(
            {"losses": losses, "lrs": lrs, "restored": restored, "rng_draws": draws}
        ))
    shutdown_runtime()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--distopt", action="store_true")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save", help="checkpoint directory to save into")
    parser.add_argument("--save-at", type=int, nargs="*", default=[])
    parser.add_argument("--keep-last", type=int, default=3)
    parser.add_argument("--load", help="checkpoint directory or step folder to resume from")
    parser.add_argument("--async-save", action="store_true", help="background tensor writes")
    parser.add_argument("--hang-in-commit", action="store_true")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE")
    run(parser.parse_args())
