"""A writer of megatron-core's indexed dataset format (``.bin`` tokens, ``.idx`` index) for
documents of one sequence each, which is what ``preprocess`` writes.

Why not megatron-core's ``IndexedDatasetBuilder``: importing it imports torch and the whole
``megatron.core`` package, about 6 s of CPU per process on the 2-core reference machine, more
than tokenizing 100 MB of text takes there (``docs/benchmarks-preprocess.md``); its index
writer also walks the sequences in Python. The format is megatron-core 0.16.1's
``_IndexWriter``: the header ``MMIDIDX\\0\\0``, version 1 (``<Q``), the dtype code (``<B``), the
sequence and document counts (``<Q``), then the sequence lengths (int32), the sequences' byte
offsets into the ``.bin`` (int64) and the document boundaries (int64). The tests check that
the files are byte-identical to the builder's and read back with megatron-core's
``IndexedDataset``, which stays the reader (and the merge, ``preprocess_shards``).
"""

from __future__ import annotations

import struct

import numpy as np

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6,
               np.float32: 7, np.uint16: 8}  # megatron-core's DType enum


def token_dtype(vocab_size: int) -> type:
    """The token dtype megatron-core picks for a vocabulary (``DType.optimal_dtype``)."""
    return np.uint16 if vocab_size < 65500 else np.int32


class IndexedDatasetWriter:
    """Appends documents to ``bin_path``; ``finalize(idx_path)`` writes the index.

    ``data_file`` and ``finalize`` are named as in megatron-core's builder.
    """

    def __init__(self, bin_path: str, dtype: type = np.int32):
        if dtype not in DTYPE_CODES:
            raise ValueError(f"unsupported token dtype {dtype}")
        self.dtype = dtype
        self.data_file = open(bin_path, "wb")
        self._lengths: list[np.ndarray] = []

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents given as all their tokens concatenated and their lengths."""
        self.data_file.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        self._lengths.append(np.asarray(lengths, dtype=np.int32))

    def finalize(self, idx_path: str) -> None:
        """Close the ``.bin`` and write the ``.idx``."""
        self.data_file.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int32)
        pointers = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], dtype=np.int64, out=pointers[1:])
        pointers *= np.dtype(self.dtype).itemsize
        documents = np.arange(len(lengths) + 1, dtype=np.int64)  # one sequence per document
        with open(idx_path, "wb") as f:
            f.write(INDEX_HEADER)
            f.write(struct.pack("<Q", INDEX_VERSION))
            f.write(struct.pack("<B", DTYPE_CODES[self.dtype]))
            f.write(struct.pack("<Q", len(lengths)))
            f.write(struct.pack("<Q", len(documents)))
            f.write(lengths.tobytes())
            f.write(pointers.tobytes())
            f.write(documents.tobytes())
