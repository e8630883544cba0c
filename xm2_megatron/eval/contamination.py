"""Every evaluation set's items as plain texts, for decontamination
(``xm2_megatron.data.decontaminate``): what xm2-eval scores, read from the lm-eval tasks' own
loaded documents (``prepare_tasks``, each task's ``eval_docs``), plus the Penn Treebank lines
the post-training scaling law is measured on.

An item is the text a leak into training data would contain, without lm-eval's prompt
scaffolding ("Question:", "Answer:"): multiple choice, the question (with its passage or
support, if any) and the correct answer; generation, the problem and its reference solution
or answer; code, the prompt and the canonical solution. The id is ``<task>:<doc index>``, the
``doc_id`` of lm-eval's logged samples. The table per set: docs/sft-and-dedup.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from xm2_megatron.data.decontaminate import Item
from xm2_megatron.data.demo_sources import SourceLocator
from xm2_megatron.errors import UserError
from xm2_megatron.eval.harness import prepare_tasks
from xm2_megatron.eval.scaling_law import ptb_all_text
from xm2_megatron.eval.tasks import runnable

PTB = "ptb"
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: <<16-3-4=9>>


def _answer(task, doc) -> str:
    """The text of the correct choice of a multiple-choice document, as lm-eval scores it."""
    choices, target = task.doc_to_choice(doc), task.doc_to_target(doc)
    return choices[target] if isinstance(target, int) else target


def _choice_after(*fields: str) -> Callable:
    """Multiple choice: ``fields`` of the document, then the correct choice."""
    return lambda task, doc: "\n".join([*(doc[f] for f in fields), _answer(task, doc)])


def _mmlu(task, doc) -> str:
    return f"{doc['question'].strip()}\n{doc['choices'][int(doc['answer'])]}"


def _winogrande(task, doc) -> str:
    return doc["sentence"].replace("_", doc["option" + doc["answer"]], 1)


def _triviaqa(task, doc) -> str:
    return f"{doc['question']}\n{doc['answer']['value']}"


def _gsm8k(task, doc) -> str:
    return f"{doc['question']}\n{_CALCULATOR.sub('', doc['answer'])}"


def _math(task, doc) -> str:
    return f"{doc['problem']}\n{doc['solution']}"


def _humaneval(task, doc) -> str:
    return doc["prompt"] + doc["canonical_solution"]


def _mbpp(task, doc) -> str:
    return "\n".join([doc["text"], *doc["test_list"], doc["code"]])


#: task -> the item text of one of its documents (lm-eval's Task, the loaded document)
ITEM_TEXT: dict[str, Callable] = {
    "xm2_arc_challenge": _choice_after("question"),
    "xm2_arc_easy": _choice_after("question"),
    "xm2_boolq": _choice_after("passage", "question"),
    "xm2_hellaswag": _choice_after("query"),
    "xm2_openbookqa": _choice_after("question_stem"),
    "xm2_piqa": _choice_after("goal"),
    "xm2_sciq": _choice_after("support", "question"),
    "xm2_winogrande": _winogrande,
    "xm2_triviaqa": _triviaqa,
    "xm2_mmlu": _mmlu,
    "xm2_gsm8k": _gsm8k,
    "xm2_math": _math,
    "xm2_humaneval": _humaneval,
    "xm2_mbpp": _mbpp,
}


def set_names() -> list[str]:
    """Every evaluation set: each offline task (a group counts as one set), then ``ptb``."""
    return [*runnable(), PTB]


def check_sets(sets: Sequence[str]) -> None:
    known = set_names()
    unknown = [s for s in sets if s not in known]
    if unknown:
        raise UserError(f"unknown evaluation set(s) {', '.join(unknown)}: expected some of "
                        f"{', '.join(known)}")


def ptb_items(work: Path, locator: SourceLocator | None = None) -> list[Item]:
    """One item per non-blank line of the scaling law's PTB text; the id is ``ptb:<line>``."""
    lines = ptb_all_text(work / "ptb_all.txt", locator).read_text(encoding="utf-8").splitlines()
    return [Item(PTB, f"{PTB}:{n}", line.strip()) for n, line in enumerate(lines, 1)
            if line.strip()]


def task_items(prepared, name: str) -> list[Item]:
    """The items of one prepared task or group (each subtask's documents, in lm-eval's order)."""
    text = ITEM_TEXT[name]
    items = []
    for task_name, task in sorted(prepared.manager.load([prepared.tasks[name]])["tasks"].items()):
        items += [Item(name, f"{task_name}:{i}", text(task, doc))
                  for i, doc in enumerate(task.eval_docs)]
    return items


def evaluation_items(work: Path, sets: Sequence[str] | None = None,
                     locator: SourceLocator | None = None) -> list[Item]:
    """The items of ``sets`` (default: every set), in ``set_names`` order; the lm-eval tasks
    are prepared in ``work`` (converted data, task YAMLs), as xm2-eval does."""
    sets = set_names() if sets is None else list(dict.fromkeys(sets))
    check_sets(sets)
    tasks = [s for s in set_names() if s in sets and s != PTB]
    items: list[Item] = []
    if tasks:
        prepared = prepare_tasks(tasks, work, locator, check_code=False)
        for name in tasks:
            items += task_items(prepared, name)
    if PTB in sets:
        items += ptb_items(work, locator)
    return items
