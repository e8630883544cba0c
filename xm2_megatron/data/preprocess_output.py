"""The output side of ``preprocess``: megatron-core ``IndexedDatasetBuilder``s per JSON key,
written under temporary names and committed (renamed) only when the run succeeds."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from xm2_megatron import atomic
from xm2_megatron.data.jsonl import DataError, write_json
from xm2_megatron.data.preprocess_workers import ChunkResult

TMP = ".tmp"  # suffix of the files a run writes before it commits them


def indexed_dataset():
    """megatron-core's indexed dataset module, imported on first use: it pulls in torch, which
    the tokenizer workers never need."""
    from megatron.core.datasets import indexed_dataset

    return indexed_dataset


def dataset_prefix(output_prefix: str, key: str) -> str:
    """``OUT/name`` + ``text`` -> ``OUT/name_text_document``, Megatron's naming."""
    return f"{output_prefix}_{key}_document"


def _add_documents(builder, tokens: np.ndarray, lengths: np.ndarray) -> None:
    """Append a chunk of documents (one sequence each) with one write: the same files as
    ``builder.add_document(doc, [len(doc)])`` per document."""
    if not len(lengths):
        return
    first = len(builder.sequence_lengths)
    builder.document_indices.extend(range(first + 1, first + len(lengths)))
    builder.add_document(tokens, lengths.tolist())  # appends the last document's end


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class Outputs:
    """One ``IndexedDatasetBuilder`` per JSON key, writing temporary files until ``commit``."""

    def __init__(self, output_prefix: str, keys: Sequence[str], dtype: type):
        self.prefixes = [dataset_prefix(output_prefix, key) for key in keys]
        self.builders = []
        self.directory = os.path.dirname(output_prefix) or "."
        builder_cls = indexed_dataset().IndexedDatasetBuilder
        with self._writing():
            os.makedirs(self.directory, exist_ok=True)
            for prefix in self.prefixes:
                self.builders.append(builder_cls(prefix + ".bin" + TMP, dtype=dtype))

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """An ``OSError`` (no permission, disk full) becomes a one-line ``DataError``."""
        try:
            yield
        except OSError as e:
            raise DataError(f"cannot write to output directory {self.directory}: "
                            f"{e.strerror or e}") from None

    def add(self, result: ChunkResult) -> None:
        with self._writing():
            for builder, tokens, lengths in zip(self.builders, result.tokens, result.lengths):
                _add_documents(builder, tokens, lengths)

    def commit(self, metadata: Sequence[dict]) -> list[str]:
        """Finalize, then move each dataset into place: ``.bin``, ``.json``, ``.idx`` last.

        An existing ``.idx`` is removed first, so no moment shows a new ``.bin`` beside an old
        ``.idx``; the pair looks complete only once the new ``.idx`` arrives.
        """
        with self._writing():
            for prefix, builder in zip(self.prefixes, self.builders):
                builder.finalize(prefix + ".idx" + TMP)
            for prefix, meta in zip(self.prefixes, metadata):
                _remove(prefix + ".idx")
                atomic.commit_file(prefix + ".bin" + TMP, prefix + ".bin")
                write_json(prefix + ".json", meta)
                atomic.commit_file(prefix + ".idx" + TMP, prefix + ".idx")
        return [prefix + ext for prefix in self.prefixes for ext in (".bin", ".idx", ".json")]

    def discard(self) -> None:
        """Close and delete the temporary files (after an error)."""
        for builder in self.builders:
            builder.data_file.close()
        for prefix in self.prefixes[: len(self.builders)]:
            for ext in (".bin", ".idx"):
                _remove(prefix + ext + TMP)
