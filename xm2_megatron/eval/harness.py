"""Run the offline benchmarks on a Hugging Face folder (or an in-memory model) through
lm-evaluation-harness's ``hf`` backend, with no hub access.

``prepare_tasks`` does the one-off work (the converted data, the task folder, lm-eval's
TaskManager and its loaded tasks, datasets included); ``evaluate_model`` scores one model on
them and can be called again and again (the in-loop benchmarks do); ``run_harness`` is both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xm2_megatron.data.demo_sources import SourceLocator
from xm2_megatron.errors import UserError
from xm2_megatron.eval.code_exec import allowed as code_allowed
from xm2_megatron.eval.offline_data import prepare_eval_data
from xm2_megatron.eval.tasks import default_tasks, runnable, write_task_folder

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass
class HarnessSettings:
    tasks: Sequence[str] = field(default_factory=default_tasks)
    limit: int | None = None  # items per task (lm-eval's --limit); None: all
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "cpu"
    log_samples: bool = False  # keep every item's log-likelihoods (calibration needs them)
    num_fewshot: int | None = None  # None: each task's own (the paper's)
    max_length: int | None = None  # tokens of context; None: the model's (max_position_embeddings)


@dataclass
class PreparedTasks:
    """lm-eval's TaskManager over the written task folder and each task's loaded Task or Group."""

    manager: object  # lm_eval.tasks.TaskManager
    tasks: dict[str, object]  # task name -> lm-eval Task or Group (its data loaded)
    folder: Path  # the task YAMLs (``lm_eval --include_path``)


def check_tasks(tasks: Sequence[str], check_code: bool = True) -> None:
    """Every task is known and, with ``check_code``, the code tasks are allowed to run."""
    known = runnable()
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}: expected some of "
                        f"{', '.join(known)}")
    unsafe = [t for t in tasks if known[t].unsafe]
    if check_code and unsafe and not code_allowed():
        raise UserError(f"{', '.join(unsafe)} run(s) the model's code: set HF_ALLOW_CODE_EVAL=1 "
                        "to allow it (on a machine where that is acceptable)")


def prepare_tasks(tasks: Sequence[str], work: Path, locator: SourceLocator | None = None,
                  check_code: bool = True) -> PreparedTasks:
    """Convert the data into ``work/data``, write the task YAMLs into ``work/tasks`` and load
    ``tasks`` (their datasets included) once. ``check_code=False`` loads the code tasks without
    HF_ALLOW_CODE_EVAL=1 (for their data only: loading runs no code)."""
    check_tasks(tasks, check_code)
    os.environ.update(OFFLINE)
    from lm_eval.tasks import TaskManager

    folder = write_task_folder(work / "tasks", prepare_eval_data(work / "data", locator))
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    loaded = {}
    for name in tasks:
        found = manager.load([name])
        loaded[name] = found["groups"].get(name) or found["tasks"][name]
    return PreparedTasks(manager, loaded, folder)


def hf_lm(model, settings: HarnessSettings):
    """lm-eval's HFLM for a Hugging Face folder or a ``(PreTrainedModel, tokenizer)`` pair."""
    from lm_eval.models.huggingface import HFLM

    if isinstance(model, tuple):
        return HFLM(pretrained=model[0], tokenizer=model[1], batch_size=settings.batch_size,
                    max_length=settings.max_length)
    return HFLM(pretrained=str(model), dtype=settings.dtype, device=settings.device,
                batch_size=settings.batch_size, max_length=settings.max_length)


def _check_generation_fits(lm, prepared: PreparedTasks, tasks: Sequence[str]) -> None:
    """A generation task needs a context longer than its new tokens (lm-eval asserts it)."""
    for name in tasks:
        for task in prepared.manager.load([prepared.tasks[name]])["tasks"].values():
            if task.get_config("output_type") != "generate_until":
                continue
            new = (task.get_config("generation_kwargs") or {}).get("max_gen_toks", lm.max_gen_toks)
            if new >= lm.max_length:
                raise UserError(f"{name} generates up to {new} tokens, more than the "
                                f"{lm.max_length}-token context: give a --max-length above "
                                f"{new} (the prompt keeps the rest)")


def evaluate_model(model, settings: HarnessSettings, prepared: PreparedTasks) -> dict:
    """lm-eval's results (``simple_evaluate``, one task at a time) for ``model`` (see ``hf_lm``)
    on the ``prepared`` tasks; adds ``seconds_per_task`` (the wall time of each)."""
    import lm_eval

    missing = [t for t in settings.tasks if t not in prepared.tasks]
    if missing:
        raise UserError(f"task(s) {', '.join(missing)} were not prepared")
    check_tasks(settings.tasks)
    lm = hf_lm(model, settings)
    _check_generation_fits(lm, prepared, settings.tasks)
    merged: dict = {}
    seconds: dict[str, float] = {}
    for task in settings.tasks:
        start = time.perf_counter()
        try:
            out = lm_eval.simple_evaluate(
                model=lm, tasks=[prepared.tasks[task]], task_manager=prepared.manager,
                limit=settings.limit, num_fewshot=settings.num_fewshot,
                log_samples=settings.log_samples, bootstrap_iters=1000,
                confirm_run_unsafe_code=code_allowed())  # check_tasks refused them otherwise
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


def run_harness(model, settings: HarnessSettings, work: Path,
                locator: SourceLocator | None = None) -> dict:
    """``prepare_tasks`` into ``work``, then ``evaluate_model``: a Hugging Face folder or a
    loaded ``(PreTrainedModel, tokenizer)`` pair, scored on ``settings.tasks``."""
    return evaluate_model(model, settings, prepare_tasks(settings.tasks, work, locator))
