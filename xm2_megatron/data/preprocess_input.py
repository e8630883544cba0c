"""Reading JSON Lines input (plain or ``.gz``) in chunks of raw lines, for ``preprocess``."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from xm2_megatron.data.jsonl import DataError

CHUNK_BYTES = 1 << 20


class Chunk(NamedTuple):
    file_index: int
    first_line: int  # 1-based number of lines[0] in its file
    position: int  # bytes of the file (compressed, for .gz) consumed after this chunk
    lines: list[bytes]


def read_chunks(paths: Sequence[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Raw lines of ``paths`` in order, in chunks of about ``chunk_bytes``."""
    for file_index, path in enumerate(paths):
        line = 1
        try:
            with open(path, "rb") as raw:
                stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
                while lines := stream.readlines(chunk_bytes):
                    yield Chunk(file_index, line, raw.tell(), lines)
                    line += len(lines)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {path} after line {line - 1}: {e}") from None
