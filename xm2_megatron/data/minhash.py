"""MinHash signatures of shingle sets and a MinHash LSH index over them (datasketch), for
near-duplicate search by Jaccard similarity: index set A with ``MinHashIndex.add``, ask about
texts of B with ``query`` (or ``contains_near`` in a dedup scan). docs/sft-and-dedup.md."""

from __future__ import annotations

import base64
from collections.abc import Hashable, Iterable
from functools import lru_cache

import numpy as np
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH

from xm2_megatron.data.dedup_text import DEFAULT_SHINGLE_SIZE, normalize, shingles
from xm2_megatron.data.jsonl import DataError

DEFAULT_JACCARD_THRESHOLD = 0.7
DEFAULT_NUM_PERM = 128
MIN_NUM_PERM = 16  # fewer: too coarse (standard error of J 0.1 at J = 0.8) and too few bands
MAX_NUM_PERM = 1024
SEED = 1
SCHEME = "affine32"  # datasketch 2's default: uint32 hash values
SHINGLE_HASH = "xxh32"


def check_num_perm(num_perm: int) -> None:
    """Raise ``DataError`` (one line naming the option) unless num_perm is usable."""
    if not MIN_NUM_PERM <= num_perm <= MAX_NUM_PERM:
        raise DataError(f"--num-perm={num_perm} must be in [{MIN_NUM_PERM}, {MAX_NUM_PERM}]")


def check_settings(jaccard_threshold: float, num_perm: int) -> None:
    """Raise ``DataError`` (one line naming the option) for settings MinHash LSH cannot use."""
    if not 0 < jaccard_threshold <= 1:
        raise DataError(f"--jaccard-threshold={jaccard_threshold} must be in (0, 1]")
    check_num_perm(num_perm)


@lru_cache(maxsize=None)
def lsh_bands(jaccard_threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band): datasketch's optimum for the threshold (equal weights on false
    positives and negatives); at least 2 bands (a threshold of 1 gets 2 of num_perm / 2)."""
    check_settings(jaccard_threshold, num_perm)
    try:
        lsh = MinHashLSH(threshold=jaccard_threshold, num_perm=num_perm)
    except ValueError:  # the optimum has one band, which MinHashLSH refuses
        return 2, num_perm // 2
    return lsh.b, lsh.r


class MinHasher:
    """Signatures (``LeanMinHash``) of texts: MinHash over the xxh32 hashes of the distinct
    shingles of the normalised text (``dedup_text``); a text without words gets the empty
    signature, equal to every other such text's."""

    def __init__(self, num_perm: int = DEFAULT_NUM_PERM,
                 shingle_size: int = DEFAULT_SHINGLE_SIZE, seed: int = SEED):
        if shingle_size < 1:
            raise DataError(f"--shingle-size={shingle_size} must be at least 1")
        check_num_perm(num_perm)
        self.num_perm, self.shingle_size, self.seed = num_perm, shingle_size, seed
        self._empty = MinHash(num_perm=num_perm, seed=seed, hashfunc=xxhash.xxh32_intdigest,
                              scheme=SCHEME)

    def of_shingles(self, features: Iterable[str]) -> LeanMinHash:
        m = self._empty.copy()
        m.update_batch([s.encode("utf-8") for s in features])
        return LeanMinHash(m)

    def of_normalized(self, normalized: str) -> LeanMinHash:
        return self.of_shingles(shingles(normalized, self.shingle_size))

    def __call__(self, text: str) -> LeanMinHash:
        """The signature of a raw text."""
        return self.of_normalized(normalize(text))

    def encode(self, signature: LeanMinHash) -> str:
        """The signature as one base64 string (its uint32 hash values, little-endian)."""
        return base64.b64encode(signature.hashvalues.astype("<u4").tobytes()).decode("ascii")

    def decode(self, encoded: str) -> LeanMinHash:
        values = np.frombuffer(base64.b64decode(encoded), dtype="<u4")
        return LeanMinHash(seed=self.seed, hashvalues=values, scheme=SCHEME)


def minhash(text: str, num_perm: int = DEFAULT_NUM_PERM,
            shingle_size: int = DEFAULT_SHINGLE_SIZE, seed: int = SEED) -> LeanMinHash:
    """The signature of one raw text (a ``MinHasher`` is faster for many)."""
    return MinHasher(num_perm, shingle_size, seed)(text)


def band_bucket(signature: LeanMinHash, band: int, rows: int, num_buckets: int) -> int:
    """The bucket of a signature in round ``band``: a seeded hash of that band's values."""
    block = signature.hashvalues[band * rows:(band + 1) * rows].astype("<u4").tobytes()
    return xxhash.xxh3_64_intdigest(block, seed=band) % num_buckets


class MinHashIndex:
    """Keyed signatures in a ``datasketch.MinHashLSH`` at a Jaccard threshold.

    A key is a candidate for a query when their signatures agree on all rows of at least one
    band (probability 1 - (1 - J^r)^b for Jaccard similarity J). ``query`` also ranks the
    candidates by the Jaccard similarity their signatures estimate; with
    ``keep_signatures=False`` (less memory) only ``candidates``/``contains_near`` work.
    """

    def __init__(self, jaccard_threshold: float = DEFAULT_JACCARD_THRESHOLD,
                 num_perm: int = DEFAULT_NUM_PERM, shingle_size: int = DEFAULT_SHINGLE_SIZE,
                 seed: int = SEED, keep_signatures: bool = True):
        self.threshold = jaccard_threshold
        self.bands, self.rows = lsh_bands(jaccard_threshold, num_perm)
        self.hasher = MinHasher(num_perm, shingle_size, seed)
        self.lsh = MinHashLSH(num_perm=num_perm, params=(self.bands, self.rows))
        # key -> (insertion rank, signature), for ranking query results
        self.signatures: dict[Hashable, tuple[int, LeanMinHash]] | None = (
            {} if keep_signatures else None)

    def __len__(self) -> int:
        return len(self.lsh.keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.lsh

    def add(self, key: Hashable, text: str) -> LeanMinHash:
        """Index a raw text under a new key; return its signature."""
        signature = self.hasher(text)
        self.add_signature(key, signature)
        return signature

    def add_signature(self, key: Hashable, signature: LeanMinHash) -> None:
        self.lsh.insert(key, signature)
        if self.signatures is not None:
            self.signatures[key] = (len(self.signatures), signature)

    def candidates(self, signature: LeanMinHash) -> list[Hashable]:
        """Keys sharing a band with the signature (LSH candidates, unverified)."""
        return self.lsh.query(signature)

    def contains_near(self, signature: LeanMinHash) -> bool:
        return bool(self.lsh.query(signature))

    def query(self, text: str | LeanMinHash, min_jaccard: float = 0.0
              ) -> list[tuple[Hashable, float]]:
        """(key, estimated Jaccard similarity) of the candidates for a raw text or signature,
        most similar first (ties in insertion order), those below ``min_jaccard`` left out."""
        if self.signatures is None:
            raise ValueError("query needs an index built with keep_signatures=True")
        signature = self.hasher(text) if isinstance(text, str) else text
        found = []
        for key in self.candidates(signature):
            rank, other = self.signatures[key]
            found.append((-signature.jaccard(other), rank, key))
        return [(key, -j) for j, _, key in sorted(found) if -j >= min_jaccard]
