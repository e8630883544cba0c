"""Run the offline benchmarks on a Hugging Face folder (or an in-memory model) through
lm-evaluation-harness's ``hf`` backend, with no hub access."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xm2_megatron.data.demo_sources import SourceLocator
from xm2_megatron.eval.offline_data import prepare_eval_data
from xm2_megatron.eval.tasks import runnable, write_task_folder
from xm2_megatron.errors import UserError

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass
class HarnessSettings:
    tasks: Sequence[str] = field(default_factory=lambda: list(runnable()))
    limit: int | None = None  # items per task (lm-eval's --limit); None: all
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "cpu"
    log_samples: bool = False  # keep every item's log-likelihoods (calibration needs them)
    num_fewshot: int | None = None  # None: each task's own (the paper's)
    max_length: int | None = None  # tokens of context; None: the model's (max_position_embeddings)


def check_tasks(tasks: Sequence[str]) -> None:
    known = runnable()
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}: expected some of "
                        f"{', '.join(known)}")


def run_harness(model, settings: HarnessSettings, work: Path,
                locator: SourceLocator | None = None) -> dict:
    """lm-eval's results (``simple_evaluate``) for ``model``: a Hugging Face folder or a
    loaded ``PreTrainedModel`` (then ``tokenizer`` must be given in ``model``'s place as a
    ``(model, tokenizer)`` pair). Task YAMLs and converted data go to ``work``; adds
    ``seconds_per_task`` (wall time of each task run alone)."""
    check_tasks(settings.tasks)
    os.environ.update(OFFLINE)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    variables = prepare_eval_data(work / "data", locator)
    manager = TaskManager(include_path=str(write_task_folder(work / "tasks", variables)),
                          include_defaults=False)
    if isinstance(model, tuple):
        lm = HFLM(pretrained=model[0], tokenizer=model[1], batch_size=settings.batch_size,
                  max_length=settings.max_length)
    else:
        lm = HFLM(pretrained=str(model), dtype=settings.dtype, device=settings.device,
                  batch_size=settings.batch_size, max_length=settings.max_length)
    merged: dict = {}
    seconds: dict[str, float] = {}
    for task in settings.tasks:
        start = time.perf_counter()
        try:
            out = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager,
                                          limit=settings.limit, num_fewshot=settings.num_fewshot,
                                          log_samples=settings.log_samples, bootstrap_iters=1000)
        except AssertionError as err:  # lm-eval asserts that every choice fits the context
            raise UserError(f"lm-eval stopped on {task} ({err or 'an assertion'}); the known cause "
                            f"is a choice longer than the model's {lm.max_length}-token context: "
                            "give a longer --max-length") from err
        seconds[task] = time.perf_counter() - start
        for key, value in out.items():
            if isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            else:
                merged.setdefault(key, value)
    merged["seconds_per_task"] = seconds
    return merged
