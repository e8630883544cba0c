"""Reading JSON Lines input (plain or ``.gz``) in chunks of whole raw lines, for ``preprocess``.

A chunk is one ``bytes`` block (about ``chunk_bytes``, extended to the end of its last line):
the main process only reads and counts newlines, the workers split and parse."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from xm2_megatron.data.jsonl import DataError

CHUNK_BYTES = 1 << 20


class Chunk(NamedTuple):
    file_index: int
    first_line: int  # 1-based number of the block's first line in its file
    position: int  # bytes of the file (compressed, for .gz) consumed after this chunk
    data: bytes  # whole lines, each ending with b"\n" (the file's last one may not)

    def lines(self) -> list[bytes]:
        """The chunk's lines without their b"\n"."""
        lines = self.data.split(b"\n")
        if not lines[-1]:
            lines.pop()
        return lines


def read_chunks(paths: Sequence[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """The lines of ``paths`` in order, in blocks of about ``chunk_bytes``."""
    for file_index, path in enumerate(paths):
        line = 1
        try:
            with open(path, "rb") as raw:
                stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
                while block := stream.read(chunk_bytes):
                    if not block.endswith(b"\n"):
                        block += stream.readline()
                    yield Chunk(file_index, line, raw.tell(), block)
                    line += block.count(b"\n")
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {path} after line {line - 1}: {e}") from None
