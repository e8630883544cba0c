"""64-bit SimHash fingerprints of shingle sets and the k+1-block index that finds one within
Hamming distance k. docs/sft-and-dedup.md."""

from __future__ import annotations

import numpy as np
import xxhash

from xm2_megatron.data.dedup_text import DEFAULT_SHINGLE_SIZE, normalize, shingles

DEFAULT_HAMMING_THRESHOLD = 3
MAX_HAMMING_THRESHOLD = 7  # 8 blocks of 8 bits; beyond that candidate lists approach the bucket
BITS = 64


def fingerprint(features: set[str]) -> int:
    """64-bit SimHash: bit i is set where most features' xxh3_64 hashes have bit i set."""
    if not features:
        return 0
    hashes = np.fromiter((xxhash.xxh3_64_intdigest(s.encode("utf-8")) for s in features),
                         dtype="<u8", count=len(features))
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    majority = bits.sum(axis=0, dtype=np.int64) * 2 > len(features)
    return int.from_bytes(np.packbits(majority, bitorder="little").tobytes(), "little")


def simhash(text: str, shingle_size: int = DEFAULT_SHINGLE_SIZE) -> int:
    """The SimHash of a raw text (0 for a text without words)."""
    return fingerprint(shingles(normalize(text), shingle_size))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def block_spans(hamming_threshold: int) -> list[tuple[int, int]]:
    """(shift, mask) of the k+1 nearly equal bit blocks of a 64-bit fingerprint."""
    n = hamming_threshold + 1
    widths = [BITS // n + (i < BITS % n) for i in range(n)]
    shifts = [sum(widths[:i]) for i in range(n)]
    return [(s, (1 << w) - 1) for s, w in zip(shifts, widths)]


class SimHashIndex:
    """Fingerprints indexed by k+1 blocks; ``contains_near`` finds one within distance k."""

    def __init__(self, hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD):
        self.k = hamming_threshold
        self.spans = block_spans(hamming_threshold)
        self.tables: list[dict[int, list[int]]] = [{} for _ in self.spans]

    def add(self, fp: int) -> None:
        for table, (shift, mask) in zip(self.tables, self.spans):
            table.setdefault(fp >> shift & mask, []).append(fp)

    def contains_near(self, fp: int) -> bool:
        for table, (shift, mask) in zip(self.tables, self.spans):
            for other in table.get(fp >> shift & mask, ()):
                if (fp ^ other).bit_count() <= self.k:
                    return True
        return False


def bucket_of(fp: int, span: tuple[int, int], round_index: int, num_buckets: int) -> int:
    """The bucket of a fingerprint in a round: a seeded hash of one block, modulo the count."""
    shift, mask = span
    block = (fp >> shift & mask).to_bytes(8, "little")
    return xxhash.xxh3_64_intdigest(block, seed=round_index) % num_buckets
