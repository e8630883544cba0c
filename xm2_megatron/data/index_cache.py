"""megatron-core's sample-index cache, keyed on each dataset's content and read pickle-free.

megatron's ``GPTDataset`` names its cached document, sample and shuffle indices after a hash
of the dataset's path, split, seed, sequence length and tokenizer. A prefix re-made in place
(other documents, same path) would reuse indices built for the old data: out-of-range
samples with fewer documents, silently wrong ones with the same count. ``ContentKeyedGPTDataset``
adds the dataset's identity (sequence and document counts, ``.bin``/``.idx`` sizes and a
digest of each file's ends) to that hash, so such a prefix gets fresh indices and the stale files
are never read. megatron maps the cached files with ``numpy.load(allow_pickle=True,
mmap_mode="r")``, which cannot unpickle (numpy refuses to map an array of objects) but ends
in a traceback; ``check_cache_files`` reads each header first and names a file that is not
plain numbers in one line.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
from megatron.core.datasets.gpt_dataset import GPTDataset

from xm2_megatron.data.jsonl import DataError


SAMPLED_BYTES = 1 << 20  # read from each end of the .bin and the .idx for the identity


def _sampled_digest(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            digest.update(f.read(SAMPLED_BYTES))
            f.seek(max(0, os.fstat(f.fileno()).st_size - SAMPLED_BYTES))
            digest.update(f.read(SAMPLED_BYTES))
    return digest.hexdigest()


def dataset_identity(prefix: str, sequences: int, documents: int) -> dict:
    """What changes when ``prefix`` is re-made: its counts, its files' sizes and a digest of
    the first and last MiB of each (the same on every copy of the files, unlike times)."""
    paths = [prefix + ".bin", prefix + ".idx"]
    return {
        "sequences": sequences,
        "documents": documents,
        "bin_bytes": os.path.getsize(paths[0]),
        "idx_bytes": os.path.getsize(paths[1]),
        "sampled_sha256": _sampled_digest(paths),
    }


class ContentKeyedGPTDataset(GPTDataset):
    """megatron's ``GPTDataset`` whose index-cache key includes ``dataset_identity``."""

    @staticmethod
    def _key_config_attributes() -> list[str]:
        return GPTDataset._key_config_attributes() + ["dataset_identity"]

    def __init__(self, indexed_dataset, dataset_path, indexed_indices, num_samples,
                 index_split, config):
        config = copy.copy(config)  # a per-dataset copy carries this dataset's identity
        config.dataset_identity = dataset_identity(
            indexed_dataset.path_prefix, len(indexed_dataset),
            len(indexed_dataset.document_indices) - 1)
        super().__init__(indexed_dataset, dataset_path, indexed_indices, num_samples,
                         index_split, config)


def cache_dirs(prefixes: list[str], cache_dir: str | None) -> list[Path]:
    """Where megatron keeps the cached indices of these datasets (and their blend)."""
    if cache_dir:
        return [Path(cache_dir)]
    name = f"{ContentKeyedGPTDataset.__name__}_indices"
    return [Path(prefix) / "cache" / name for prefix in prefixes]


def check_cache_files(prefixes: list[str], cache_dir: str | None) -> None:
    """Every cached ``.npy`` of these datasets holds plain numbers (its header is read, not
    its data); a file declaring Python objects is refused with one line."""
    for folder in cache_dirs(prefixes, cache_dir):
        for path in sorted(folder.glob("*.npy")) if folder.is_dir() else ():
            try:
                with open(path, "rb") as f:
                    major, _ = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                                   else np.lib.format.read_array_header_2_0)
                    dtype = read_header(f)[2]
            except (OSError, ValueError) as error:
                raise DataError(f"{path}: not a readable index-cache file ({error}); delete it "
                                "and megatron rebuilds it") from None
            if dtype.hasobject:
                raise DataError(f"{path}: an index-cache file that holds Python objects, "
                                "not indices: refused; delete it and megatron rebuilds it")
