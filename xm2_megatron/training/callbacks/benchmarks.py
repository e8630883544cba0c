"""In-loop benchmarks: every ``benchmarks.interval`` steps (and after the last) the logging rank
turns the live weights into an in-memory Hugging Face model and runs ``benchmarks.tasks``
through lm-eval on their first ``benchmarks.limit`` items; the scores reach the other callbacks
through ``on_benchmarks`` (metrics.jsonl, W&B). The data, the task folder and lm-eval's tasks
are prepared once, at the start of the fit. Every random-number state is put back afterwards,
so the training losses are those of a run without benchmarks."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from megatron.core.utils import unwrap_model

from xm2_megatron.convert.export import granite_model, hf_tokenizer
from xm2_megatron.eval.harness import HarnessSettings, check_tasks, evaluate_model, prepare_tasks
from xm2_megatron.eval.tasks import runnable
from xm2_megatron.training.callback import Callback, StepEnd
from xm2_megatron.training.state import parameters_gathered


class _RandomState:
    """Python's, NumPy's and torch's generators (and megatron's CUDA tracker), kept and restored."""

    def __enter__(self):
        from megatron.core.tensor_parallel import get_cuda_rng_tracker

        self.tracker = get_cuda_rng_tracker()
        self.saved = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                      torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                      self.tracker.get_states())
        return self

    def __exit__(self, *exc) -> None:
        python, numpy_state, cpu, cuda, tracker = self.saved
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        self.tracker.set_states(tracker)


class Benchmarks(Callback):
    def __init__(self, cfg):
        check_tasks(cfg.benchmarks.tasks)
        self.settings = cfg.benchmarks
        self.tokenizer = None
        self.prepared = None  # the logging rank's PreparedTasks, from on_fit_start

    def on_fit_start(self, trainer) -> None:
        if trainer.runtime.is_main:
            model = trainer.cfg.model
            self.tokenizer = hf_tokenizer(trainer.cfg.data.tokenizer_model, model.vocab_size,
                                          model.seq_length)
            logging.getLogger("lm_eval").setLevel(logging.ERROR)
            if self.prepared is None:
                work = Path(trainer.cfg.logging.output_dir) / trainer.cfg.name / "benchmarks"
                with _RandomState():
                    self.prepared = prepare_tasks(self.settings.tasks, work)

    def on_step_end(self, trainer, end: StepEnd) -> None:
        if end.step % self.settings.interval and end.step != trainer.cfg.train.steps:
            return
        scores = None
        with parameters_gathered(trainer.state.model), _RandomState():
            if trainer.runtime.is_main:
                scores = self._scores(trainer)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        if scores is not None:
            trainer.emit("on_benchmarks", end.step, scores)

    def _scores(self, trainer) -> dict[str, float]:
        cfg = trainer.cfg
        gpt = unwrap_model(trainer.state.model[0])
        state = {k: v.detach() for k, v in gpt.state_dict().items() if isinstance(v, torch.Tensor)}
        model = granite_model(state, cfg).to(trainer.runtime.device)
        settings = HarnessSettings(tasks=self.settings.tasks, limit=self.settings.limit,
                                   batch_size=self.settings.batch_size)
        results = evaluate_model((model, self.tokenizer), settings, self.prepared)["results"]
        metrics = runnable()
        return {task: float(results[task][metrics[task].metric]) for task in self.settings.tasks}
