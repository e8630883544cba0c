"""Cheap start-up checks of one indexed dataset (``.bin``/``.idx``/``.json``), so that a damaged
or mismatched dataset is one ``DataError`` naming the file before the model is built, not a
traceback at the first step.

- ``check_index``: the ``.idx`` reads with megatron-core's own index reader and the ``.bin`` is
  exactly as long as the index says (last sequence pointer + its length x the token size).
  Reads the index only (mapped, no copy), never the token data.
- ``check_vocabulary``: the dataset's tokenizer (its ``.json`` sidecar) fits ``model.vocab_size``.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from xm2_megatron.data.jsonl import DataError

REMAKE = "re-make it with xm2-preprocess"


def _read_index(idx: str) -> tuple[int, int, int, str]:
    """``(sequences, documents, bytes the .bin must hold, token dtype)`` of ``idx``, read with
    megatron-core's ``_IndexReader``; ``DataError`` for anything it cannot read."""
    from megatron.core.datasets.indexed_dataset import _INDEX_HEADER, _IndexReader

    size = os.path.getsize(idx)
    with open(idx, "rb") as f:
        header = f.read(len(_INDEX_HEADER))
    if header != _INDEX_HEADER:  # checked here too: megatron only asserts it (gone under -O)
        raise DataError(f"{idx} is not a megatron-core index (bad header, {size:,} bytes); "
                        f"{REMAKE}")
    try:
        reader = _IndexReader(idx, multimodal=False)
    except (ValueError, struct.error, AssertionError, KeyError, OSError) as error:
        raise DataError(f"{idx} is truncated or damaged ({size:,} bytes; reading it fails: "
                        f"{error}); {REMAKE}") from None
    try:
        sequences, documents = reader.sequence_count, reader.document_count
        expected = 0
        if sequences:
            expected = (int(reader.sequence_pointers[-1])
                        + int(reader.sequence_lengths[-1]) * reader.dtype_size)
        dtype = np.dtype(reader.dtype).name
    finally:
        del reader  # closes the mapping (no array of it is kept)
    return sequences, documents, expected, dtype


def check_index(prefix: str) -> int:
    """``prefix.idx`` is a whole megatron-core index and ``prefix.bin`` holds exactly the
    tokens it describes; returns the number of sequences."""
    idx, bin_path = prefix + ".idx", prefix + ".bin"
    try:
        sequences, documents, expected, dtype = _read_index(idx)
        actual = os.path.getsize(bin_path)
    except OSError as error:
        raise DataError(f"cannot read dataset {prefix}: {error.strerror or error}") from None
    if not sequences:
        raise DataError(f"{idx} describes no sequences: dataset {prefix} is empty; {REMAKE}")
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its index"
        raise DataError(
            f"{bin_path} is {actual:,} bytes but {idx} describes {sequences:,} sequences "
            f"({documents - 1:,} documents) of {dtype} tokens in {expected:,} bytes: the .bin is "
            f"{what} (or the pair comes from different runs); {REMAKE}")
    return sequences


def check_vocabulary(prefix: str, meta: dict, model_vocab_size: int, tokenizer_model: str,
                     tokenizer_vocab_size: int) -> None:
    """The tokenizer the dataset was made with (its sidecar's ``tokenizer.vocab_size``, else
    that of ``tokenizer_model``, the same tokenizer by its hash) has no token id at or past
    ``model.vocab_size``."""
    vocab = (meta.get("tokenizer") or {}).get("vocab_size") or tokenizer_vocab_size
    if vocab <= model_vocab_size:
        return
    raise DataError(
        f"{prefix}.json: dataset {os.path.basename(prefix)} was tokenized with a "
        f"{vocab:,}-token vocabulary (data.tokenizer_model={tokenizer_model}), larger than "
        f"model.vocab_size={model_vocab_size:,}: token ids up to {vocab - 1:,} would index past "
        f"the embedding; set model.vocab_size={vocab} or more")
