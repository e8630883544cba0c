"""The project's indexed-dataset writer writes the same bytes as megatron-core's builder, and
megatron-core reads them back."""

import numpy as np
import pytest
import torch

from xm2_megatron.data.indexed_writer import IndexedDatasetWriter, token_dtype


def _write_both(tmp_path, docs, dtype, chunks):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    ours = IndexedDatasetWriter(str(tmp_path / "ours.bin"), dtype=dtype)
    for part in np.array_split(np.arange(len(docs)), chunks):
        group = [docs[i] for i in part]
        tokens = np.concatenate(group) if group else np.zeros(0, np.int64)
        ours.add_documents(tokens, np.array([len(d) for d in group]))
    ours.finalize(str(tmp_path / "ours.idx"))
    theirs = IndexedDatasetBuilder(str(tmp_path / "theirs.bin"), dtype=dtype)
    for doc in docs:
        theirs.add_document(torch.from_numpy(doc), [len(doc)])
    theirs.finalize(str(tmp_path / "theirs.idx"))
    return [(tmp_path / f"{who}{ext}").read_bytes() for who in ("ours", "theirs")
            for ext in (".bin", ".idx")]


@pytest.mark.parametrize("vocab,chunks", [(8_000, 1), (8_000, 7), (65_280, 3), (200_000, 4)])
def test_same_bytes_as_megatron_builder(tmp_path, vocab, chunks):
    rng = np.random.default_rng(vocab)
    docs = [rng.integers(0, vocab, rng.integers(1, 300)) for _ in range(50)]
    dtype = token_dtype(vocab)
    assert dtype == (np.uint16 if vocab < 65500 else np.int32)
    ours_bin, ours_idx, theirs_bin, theirs_idx = _write_both(tmp_path, docs, dtype, chunks)
    assert ours_bin == theirs_bin and ours_idx == theirs_idx

    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(tmp_path / "ours"))
    assert len(dataset) == len(docs)
    assert all(np.array_equal(dataset[i], doc) for i, doc in enumerate(docs))


def test_empty_dataset_matches_too(tmp_path):
    assert len(set(_write_both(tmp_path, [], np.uint16, 1)[1::2])) == 1
