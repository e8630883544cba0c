"""lm-eval's results as the paper's Tables 2 and 3: one row per model, a column per benchmark
(percent), the tables' averages, and a note for every score that is not comparable."""

from __future__ import annotations

from xm2_megatron.eval.code_exec import allowed as code_allowed
from xm2_megatron.eval.tasks import AVERAGED, BENCHMARKS, Benchmark


def benchmark_scores(results: dict) -> dict[str, float]:
    """Column -> score in percent, for every benchmark lm-eval's ``results`` holds."""
    scores = {}
    for bench in BENCHMARKS:
        value = results.get("results", {}).get(bench.task or "", {}).get(bench.metric)
        if isinstance(value, (int, float)):
            scores[bench.column] = 100.0 * value
    return scores


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def paper_table(table: int, rows: dict[str, dict[str, float]]) -> str:
    """The paper's Table ``table`` (2 or 3) in Markdown for ``rows`` (model -> column ->
    score); the average is over the paper's averaged columns and only when all are present."""
    columns = [b.column for b in BENCHMARKS if b.table == table]
    lines = ["| model | " + " | ".join(columns) + " | Avg |",
             "|---" * (len(columns) + 2) + "|"]
    for model, scores in rows.items():
        averaged = [scores.get(c) for c in AVERAGED[table]]
        average = sum(averaged) / len(averaged) if None not in averaged else None
        lines.append(f"| {model} | " + " | ".join(_cell(scores.get(c)) for c in columns)
                     + f" | {_cell(average)} |")
    return "\n".join(lines)


def notes(results: dict, limit: int | None) -> list[str]:
    """What keeps each score from being the paper's number."""
    ran = set(results.get("results", {}))
    out = []
    for bench in BENCHMARKS:
        if bench.task is None:
            out.append(f"{bench.column}: not run ({bench.note})")
        elif bench.unsafe and bench.task not in ran and not code_allowed():
            out.append(f"{bench.column}: not run (it executes the model's code: set "
                       "HF_ALLOW_CODE_EVAL=1)")
        elif bench.task in ran and bench.note:
            out.append(f"{bench.column}: {bench.note}")
    if limit is not None:
        out.append(f"only the first {limit} items of each task (--limit): not comparable")
    return out


def report(results: dict, model: str, limit: int | None) -> str:
    """Both tables, the notes and each task's shots, items and wall time, in Markdown."""
    scores = benchmark_scores(results)
    parts = [f"## Commonsense reasoning, zero-shot (the paper's Table 2; TriviaQA is in its "
             f"text)\n\n{paper_table(2, {model: scores})}",
             f"## Complex reasoning (the paper's Table 3)\n\n{paper_table(3, {model: scores})}"]
    rows = ["| task | shots | items | seconds |", "|---|---|---|---|"]
    seconds = results.get("seconds_per_task", {})
    for bench in BENCHMARKS:
        if bench.task in seconds:
            items = _items(results, bench)
            rows.append(f"| {bench.task} | {results.get('n-shot', {}).get(bench.task, bench.shots)}"
                        f" | {items} | {seconds[bench.task]:.1f} |")
    parts.append("\n".join(rows))
    parts.append("\n".join(f"- {line}" for line in notes(results, limit)))
    return "\n\n".join(parts) + "\n"


def _items(results: dict, bench: Benchmark) -> int | str:
    samples = results.get("n-samples", {})
    if bench.task in samples:
        return samples[bench.task]["effective"]
    subtasks = results.get("group_subtasks", {}).get(bench.task, [])
    return sum(samples[t]["effective"] for t in subtasks if t in samples) or "?"
