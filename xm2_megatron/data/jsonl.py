"""JSON Lines helpers shared by the data tools: line-numbered reading, atomic writing.

``read_jsonl`` streams records from ``.jsonl`` or ``.jsonl.gz`` files and raises ``DataError``
naming the file and line for anything that is not a JSON object; blank lines are skipped.
``atomic_output`` writes to a temporary file beside the destination and renames it into place
only when the block finishes without an exception, so a failed run leaves no output.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

from xm2_megatron import atomic
from xm2_megatron.errors import UserError


class DataError(UserError):
    """Bad input data or arguments; the message names the file and line (``run_cli`` prints
    it). A :class:`~xm2_megatron.errors.UserError`, not a ``ConfigError``."""


class Line(NamedTuple):
    path: str
    lineno: int
    record: dict
    raw: str  # the line as read, without its newline


def where(path: str, lineno: int) -> str:
    return f"{path}:{lineno}"


def open_text(path: str | os.PathLike) -> IO[str]:
    """Open a UTF-8 text file for reading, gunzipping ``*.gz``."""
    try:
        if str(path).endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8")
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"input file {path} does not exist") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def read_jsonl(paths: Iterable[str | os.PathLike]) -> Iterator[Line]:
    """Yield every non-blank line of ``paths`` (in order) as a parsed JSON object."""
    for path in map(str, paths):
        with open_text(path) as f:
            lineno = 0
            try:
                for lineno, line in enumerate(f, 1):
                    raw = line.rstrip("\r\n")
                    if not raw.strip():
                        continue
                    try:
                        record = json.loads(raw)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{where(path, lineno)}: invalid JSON: {e.msg} "
                                        f"(column {e.colno})") from None
                    if not isinstance(record, dict):
                        raise DataError(f"{where(path, lineno)}: expected a JSON object, "
                                        f"got {type(record).__name__}")
                    yield Line(path, lineno, record, raw)
            except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
                raise DataError(f"{where(path, lineno + 1)}: cannot decode: {e}") from None


def stem(path: str | os.PathLike) -> str:
    """A data file's name less ``.gz``, ``.jsonl``, ``.json``: ``a/gsm8k.jsonl.gz`` -> ``gsm8k``."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def sidecar(output: str | os.PathLike, tag: str) -> Path:
    """``out.jsonl[.gz]`` -> ``out.<tag>.json``: where a tool's report goes."""
    return Path(output).with_name(f"{stem(output)}.{tag}.json")


def output_dir(output: str | os.PathLike) -> Path:
    """The directory ``output`` goes in; ``DataError`` if it does not exist."""
    parent = Path(output).parent
    if not parent.is_dir():
        raise DataError(f"output directory {parent} does not exist")
    return parent


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` (gzipped for ``*.gz``) only if the block succeeds."""
    path = Path(path)
    with atomic.atomic_file(output_dir(path) / path.name, "wb") as raw:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                    io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
                yield f
        else:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as f:
                yield f


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_output(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
