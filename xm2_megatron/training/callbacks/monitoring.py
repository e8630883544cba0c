"""The run's console line, ``metrics.jsonl``, W&B run and plots (``training.monitor``),
written by the logging rank into ``logging.output_dir/<name>``; the W&B run id is shared with
every rank for the checkpoints. A run that does not resume its own checkpoint first moves an
earlier run's folder of the same name aside (``monitor.archive_earlier_run``)."""

from __future__ import annotations

from pathlib import Path

from xm2_megatron.model import count_parameters, training_flops_per_token
from xm2_megatron.runtime import broadcast_from_rank0
from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.monitor import Monitor, archive_earlier_run
from xm2_megatron.training.trainer import EXIT_OK


class Monitoring(Callback):
    def __init__(self):
        self.monitor: Monitor | None = None

    def on_fit_start(self, trainer) -> None:
        cfg, runtime = trainer.cfg, trainer.runtime
        # the same W&B run when resuming this run; a branch from checkpoint.load gets a new one
        own = trainer.loaded_from is not None and trainer.loaded_from == str(Path(cfg.checkpoint.dir or ""))
        if runtime.is_main:
            p = cfg.parallel
            print(f"xm2-megatron: {cfg.name} | {count_parameters(cfg.model).total / 1e6:.2f}M params"
                  f" | world {runtime.env.world_size} (TP {p.tensor_parallel}, PP "
                  f"{p.pipeline_parallel}"
                  + (f" x {p.virtual_pipeline} virtual" if p.virtual_pipeline else "")
                  + f", DP {p.data_parallel(runtime.env.world_size)}) | "
                  f"{runtime.device} {runtime.backend}"
                  + (f" | resumed at step {trainer.step} from {trainer.loaded_from}"
                     if trainer.loaded_from else ""), flush=True)
            if hosts := runtime.host_summary(p.tensor_parallel):
                print(hosts, flush=True)
            run_dir = Path(cfg.logging.output_dir) / cfg.name
            archived = None if own else archive_earlier_run(run_dir)
            if archived is not None:
                print(f"note: {run_dir} held an earlier run that this one does not resume: "
                      f"moved to {archived}", flush=True)
            self.monitor = Monitor(
                cfg, run_dir,
                training_flops_per_token(cfg.model, trainer.seq_length), runtime.env.world_size,
                resume_run_id=trainer.loaded_state.get("wandb_run_id") if own else None,
                start_step=trainer.step, device=runtime.device)
        trainer.wandb_run_id = broadcast_from_rank0(self.monitor.run_id if self.monitor else None)

    def on_step_end(self, trainer, end: StepEnd) -> None:
        if self.monitor is not None:
            r = end.result
            self.monitor.log_step(end.step, end.stage, r.loss, r.lr, r.grad_norm, tokens=end.tokens,
                                  seconds=end.seconds, skipped=not r.update_successful)

    def on_validation(self, trainer, step: int, loss: float) -> None:
        if self.monitor is not None:
            self.monitor.log_validation(step, loss)

    def on_benchmarks(self, trainer, step: int, scores: dict[str, float]) -> None:
        if self.monitor is not None:
            self.monitor.log_benchmarks(step, scores)

    def on_fit_end(self, trainer, exit_code: int) -> None:
        if self.monitor is not None:
            self.monitor.finish(exit_code)
            if exit_code == EXIT_OK:
                why = f" (stopped: {trainer.stop_request.reason})" if trainer.stop_request else ""
                print(f"done: {trainer.step} steps{why}; metrics and plots in "
                      f"{self.monitor.run_dir}", flush=True)
