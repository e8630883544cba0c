"""The training entry point: ``python -m xm2_megatron.train RECIPE [key=value ...]``.

Launch it as one process, under ``torchrun --nproc_per_node N``, or under ``srun``; the
parallel layout comes from the recipe (``parallel.*``) and the world size. Checkpoints go to
``checkpoint.dir`` every ``checkpoint.interval`` steps and at the end; a run whose
``checkpoint.dir`` (or ``checkpoint.load``) holds a checkpoint resumes from it.

Exit codes: 0 done; 2 bad configuration or data; 3 stopped after
``train.max_skipped_steps`` consecutive non-finite (NaN/Inf) steps; 75 saved and stopped on
SIGTERM/SIGUSR1 or ``train.time_limit_minutes`` (resume by running the same command again).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from xm2_megatron.config import ExperimentConfig, load_config, run_cli
from xm2_megatron.runtime import detect_launch_env


EXIT_DIVERGED = 3
EXIT_STOPPED = 75  # EX_TEMPFAIL: saved at a step boundary, to be resumed (Slurm requeue)


class Diverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def train(cfg: ExperimentConfig) -> int:
    """Run (or resume) the recipe on this process's share of the job; returns the exit code."""
    import torch
    from megatron.core import parallel_state
    from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

    from xm2_megatron.config import config_to_dict
    from xm2_megatron.data.mixture import check_data
    from xm2_megatron.data.stream import StageDataStream
    from xm2_megatron.model import build_model, count_parameters, training_flops_per_token
    from xm2_megatron.runtime import init_runtime, shutdown_runtime
    from xm2_megatron.training.checkpoint import load_checkpoint, save_checkpoint
    from xm2_megatron.training.monitor import Monitor
    from xm2_megatron.training.setup import build_optimizer, wrap_with_ddp
    from xm2_megatron.training.signals import StopSignal
    from xm2_megatron.training.step import forward_backward, train_step

    started = time.monotonic()
    check_data(cfg)
    runtime = init_runtime(cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, cfg.train.seed)
    stop = StopSignal()
    model = wrap_with_ddp(cfg, build_model(cfg))
    optimizer, scheduler = build_optimizer(cfg, model)
    # the run's own checkpoints first (a requeued job); checkpoint.load only to start from
    resume_from, state = None, None
    for candidate in (cfg.checkpoint.dir, cfg.checkpoint.load):
        if candidate and state is None:
            resume_from = candidate
            state = load_checkpoint(candidate, model, optimizer, scheduler)
    first_step = state["step"] if state else 0
    # the same W&B run when resuming this run; a branch from checkpoint.load gets a new one
    own_run_id = state.get("wandb_run_id") if state and resume_from == cfg.checkpoint.dir else None
    dp_size = parallel_state.get_data_parallel_world_size()
    stream = StageDataStream(cfg, parallel_state.get_data_parallel_rank(), dp_size)
    seq_length = cfg.data.seq_length or cfg.model.seq_length
    monitor = None
    if runtime.is_main:
        print(
            f"xm2-megatron: {cfg.name} | {count_parameters(cfg.model).total / 1e6:.2f}M params | "
            f"world {runtime.env.world_size} (TP {cfg.parallel.tensor_parallel}, "
            f"PP {cfg.parallel.pipeline_parallel}, DP {dp_size}) | {runtime.device} {runtime.backend}"
            + (f" | resumed at step {first_step} from {resume_from}" if state else ""),
            flush=True,
        )
        monitor = Monitor(cfg, Path(cfg.logging.output_dir) / cfg.name,
                          training_flops_per_token(cfg.model, seq_length), runtime.env.world_size,
                          resume_run_id=own_run_id,
                          start_step=first_step, device=runtime.device)
    run_id = [monitor.run_id if monitor else None]
    torch.distributed.broadcast_object_list(run_id, src=0)
    skipped = state.get("skipped_steps", 0) if state else 0
    async_queue = AsyncCallsQueue() if cfg.checkpoint.async_save and cfg.checkpoint.dir else None

    def save(completed: int, wait: bool = False) -> None:
        """Checkpoint after ``completed`` steps; ``wait`` blocks until an async save is on disk."""
        if cfg.checkpoint.dir is None:
            return
        train_state = {"stage": stream.stage_at(completed - 1), "skipped_steps": skipped,
                       "consumed_samples": stream.consumed_before(completed),
                       "wandb_run_id": run_id[0]}
        path = save_checkpoint(cfg.checkpoint.dir, completed, model, optimizer, scheduler,
                               train_state, config_to_dict(cfg), cfg.checkpoint.keep_last,
                               async_queue=async_queue)
        if async_queue is not None and wait:
            async_queue.maybe_finalize_async_calls(blocking=True)
        if runtime.is_main:
            pending = async_queue is not None and not wait
            print(f"{'saving' if pending else 'saved'} checkpoint {path}"
                  + (" in the background" if pending else ""), flush=True)

    exit_code, skipped_in_a_row = 1, 0
    try:
        for step in range(first_step, cfg.train.steps):
            start = time.perf_counter()
            if async_queue is not None:
                async_queue.maybe_finalize_async_calls(blocking=False)
            stage, microbatches = stream.microbatches(step)
            result = train_step(model, optimizer, scheduler, microbatches)
            elapsed = time.perf_counter() - start
            skipped_in_a_row = 0 if result.update_successful else skipped_in_a_row + 1
            skipped += not result.update_successful
            if monitor is not None:
                monitor.log_step(step + 1, stage, result.loss, result.lr, result.grad_norm,
                                 tokens=cfg.train.global_batch_size_at(step) * seq_length,
                                 seconds=elapsed, skipped=not result.update_successful)
            if skipped_in_a_row >= cfg.train.max_skipped_steps:
                exit_code = EXIT_DIVERGED
                raise Diverged(
                    f"stopping at step {step + 1}: {skipped_in_a_row} consecutive steps had a "
                    f"non-finite loss or gradient (loss {result.loss}); no update was applied in "
                    f"them (train.max_skipped_steps={cfg.train.max_skipped_steps})")
            last = step + 1 == cfg.train.steps
            interval = cfg.train.eval_interval
            if interval is not None and ((step + 1) % interval == 0 or last):
                valid_loss = forward_backward(model, stream.validation_microbatches(stage),
                                              forward_only=True)
                if monitor is not None:
                    monitor.log_validation(step + 1, valid_loss)
            limit = cfg.train.time_limit_minutes
            stop.received |= limit is not None and time.monotonic() - started > 60 * limit
            if stop.requested() and not last:
                save(step + 1, wait=True)
                exit_code = EXIT_STOPPED
                if runtime.is_main:
                    print(f"stopped at step {step + 1} on request (signal or time limit); "
                          f"exit {EXIT_STOPPED}", flush=True)
                break
            interval = cfg.checkpoint.interval
            if last or (interval is not None and (step + 1) % interval == 0):
                save(step + 1, wait=last)
        else:
            exit_code = 0
    finally:
        stop.restore()
        if monitor is not None:
            monitor.finish(exit_code)
            if exit_code == 0:
                print(f"done: {cfg.train.steps} steps; metrics and plots in {monitor.run_dir}",
                      flush=True)
    if async_queue is not None:
        async_queue.close()
    shutdown_runtime()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/cpu_quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=20")
    args = parser.parse_args(argv)
    world_size = detect_launch_env().world_size
    cfg = run_cli(load_config, args.recipe, args.overrides, world_size=world_size)
    try:
        return run_cli(train, cfg)
    except Diverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
