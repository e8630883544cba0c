"""Exact (xxh3 of the normalised text) and SimHash near-duplicate removal over JSONL, in
buckets of ``bucket_size`` documents, for several rounds, streaming: ``dedup_files`` writes the
output atomically and a JSON report beside it. Features, the threshold, the block index and
why k + 1 rounds find every pair: docs/sft-and-dedup.md."""

from __future__ import annotations

import heapq
import math
import os
import re
import tempfile
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import xxhash

from xm2_megatron.data.jsonl import (
    DataError,
    atomic_output,
    output_dir,
    read_jsonl,
    sidecar,
    where,
    write_json,
)

DEFAULT_BUCKET_SIZE = 1_000_000
DEFAULT_HAMMING_THRESHOLD = 3
DEFAULT_SHINGLE_SIZE = 2
MAX_HAMMING_THRESHOLD = 7  # 8 blocks of 8 bits; beyond that candidate lists approach the bucket
BITS = 64

# Han (incl. extensions A-G and compatibility), kana: languages written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_UNIT = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")


def normalize(text: str) -> str:
    """NFKC, whitespace runs -> one space, stripped: the text exact duplicates are compared on."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def exact_hash(normalized: str) -> int:
    """128-bit xxh3 hash of a ``normalize``d text."""
    return xxhash.xxh3_128_intdigest(normalized.encode("utf-8"))


def shingles(normalized: str, size: int = DEFAULT_SHINGLE_SIZE) -> set[str]:
    """Distinct lowercased ``size``-grams of words / CJK characters (the whole text if shorter)."""
    units = _UNIT.findall(normalized.lower())
    if len(units) <= size:
        return {" ".join(units)} if units else set()
    return {" ".join(units[i:i + size]) for i in range(len(units) - size + 1)}


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


# A work line is "index<TAB>fingerprint<TAB>exact hash<TAB>original line", numbers in hex.
def _work_line(index: int, fp: int, exact: int, raw: str) -> str:
    return f"{index:x}\t{fp:x}\t{exact:x}\t{raw}\n"


def _fields(line: str) -> tuple[int, int, int]:
    index, fp, exact, _ = line.split("\t", 3)
    return int(index, 16), int(fp, 16), int(exact, 16)


def _index_key(line: str) -> int:
    return int(line.split("\t", 1)[0], 16)


def _ingest(inputs: Sequence[str], json_key: str, shingle_size: int, exact_only: bool,
            out) -> int:
    """Validate and fingerprint every input document into a work file; return the count."""
    count = 0
    for line in read_jsonl(inputs):
        text = line.record.get(json_key)
        if not isinstance(text, str):
            problem = "has no" if json_key not in line.record else "has a non-string"
            raise DataError(f"{where(line.path, line.lineno)}: record {problem} {json_key!r} field")
        normalized = normalize(text)
        exact = exact_hash(normalized)
        if exact_only:  # bucket by the exact hash instead of a fingerprint
            fp = exact & (2**BITS - 1)
        else:
            fp = fingerprint(shingles(normalized, shingle_size))
        out.write(_work_line(count, fp, exact, line.raw))
        count += 1
    return count


def _scan_bucket(lines: Iterator[str], hamming_threshold: int | None, out) -> tuple[int, int]:
    """Write the bucket's lines that are neither exact nor near duplicates of an earlier one."""
    exact_seen: set[int] = set()
    index = SimHashIndex(hamming_threshold) if hamming_threshold is not None else None
    exact_dups = near_dups = 0
    for line in lines:
        _, fp, exact = _fields(line)
        if exact in exact_seen:
            exact_dups += 1
            continue
        exact_seen.add(exact)
        if index is not None:
            if index.contains_near(fp):
                near_dups += 1
                continue
            index.add(fp)
        out.write(line)
    return exact_dups, near_dups


def _split(work_in: Path, paths: list[Path], span: tuple[int, int], round_index: int) -> None:
    with ExitStack() as stack, open(work_in, encoding="utf-8") as f:
        outs = [stack.enter_context(open(p, "w", encoding="utf-8")) for p in paths]
        for line in f:
            outs[bucket_of(_fields(line)[1], span, round_index, len(paths))].write(line)


def _run_round(work_in: Path, work_out: Path, tmp: Path, round_index: int, num_buckets: int,
               span: tuple[int, int], hamming_threshold: int | None) -> tuple[int, int]:
    """One round: split into buckets, scan each, merge the kept lines back in input order."""
    bucket_files = [work_in]
    if num_buckets > 1:
        bucket_files = [tmp / f"bucket-{b}" for b in range(num_buckets)]
        _split(work_in, bucket_files, span, round_index)
    exact_dups = near_dups = 0
    kept_files = []
    for b, path in enumerate(bucket_files):
        kept_files.append(tmp / f"kept-{b}")
        with open(path, encoding="utf-8") as f, open(kept_files[-1], "w", encoding="utf-8") as out:
            e, n = _scan_bucket(f, hamming_threshold, out)
        exact_dups, near_dups = exact_dups + e, near_dups + n
        if path != work_in:
            os.unlink(path)
    with ExitStack() as stack, open(work_out, "w", encoding="utf-8") as out:
        files = [stack.enter_context(open(p, encoding="utf-8")) for p in kept_files]
        out.writelines(heapq.merge(*files, key=_index_key))
    for path in kept_files:
        os.unlink(path)
    return exact_dups, near_dups


def dedup_files(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                json_key: str = "text", bucket_size: int = DEFAULT_BUCKET_SIZE,
                rounds: int | None = None, hamming_threshold: int = DEFAULT_HAMMING_THRESHOLD,
                shingle_size: int = DEFAULT_SHINGLE_SIZE, exact_only: bool = False) -> dict:
    """Deduplicate ``inputs`` (JSONL, in order) into ``output``; write and return the report.

    ``rounds`` defaults to ``hamming_threshold + 1`` (1 with ``exact_only``).
    """
    if bucket_size < 1:
        raise DataError(f"--bucket-size={bucket_size} must be at least 1")
    if not 0 <= hamming_threshold <= MAX_HAMMING_THRESHOLD:
        raise DataError(f"--hamming-threshold={hamming_threshold} must be in "
                        f"[0, {MAX_HAMMING_THRESHOLD}]")
    if shingle_size < 1:
        raise DataError(f"--shingle-size={shingle_size} must be at least 1")
    max_rounds = 1 if exact_only else hamming_threshold + 1
    rounds = max_rounds if rounds is None else rounds
    if not 1 <= rounds <= max_rounds:
        raise DataError(f"--rounds={rounds} must be in [1, {max_rounds}]: "
                        + ("exact duplicates always share a bucket" if exact_only else
                           f"after {max_rounds} rounds every pair within distance "
                           f"{hamming_threshold} has shared a bucket"))
    inputs = [str(p) for p in inputs]
    output = Path(output)
    spans = [(0, 2**BITS - 1)] if exact_only else block_spans(hamming_threshold)
    start = time.perf_counter()
    report_rounds = []
    with tempfile.TemporaryDirectory(dir=output_dir(output), prefix=".dedup-") as tmp_name:
        tmp = Path(tmp_name)
        work = tmp / "work-0"
        with open(work, "w", encoding="utf-8") as f:
            documents = remaining = _ingest(inputs, json_key, shingle_size, exact_only, f)
        for r in range(rounds):
            num_buckets = max(1, math.ceil(remaining / bucket_size))
            next_work = tmp / f"work-{r + 1}"
            exact_dups, near_dups = _run_round(work, next_work, tmp, r, num_buckets, spans[r],
                                               None if exact_only else hamming_threshold)
            os.unlink(work)
            work = next_work
            report_rounds.append({"round": r + 1, "buckets": num_buckets, "documents": remaining,
                                  "exact_duplicates": exact_dups, "near_duplicates": near_dups})
            remaining -= exact_dups + near_dups
            if num_buckets == 1:
                break
        with open(work, encoding="utf-8") as f, atomic_output(output) as out:
            for line in f:
                out.write(line.split("\t", 3)[3])
    seconds = time.perf_counter() - start
    report = {
        "inputs": inputs,
        "output": str(output),
        "settings": {"json_key": json_key, "bucket_size": bucket_size, "rounds": rounds,
                     "hamming_threshold": None if exact_only else hamming_threshold,
                     "shingle_size": None if exact_only else shingle_size,
                     "exact_only": exact_only, "normalization": "NFKC+whitespace",
                     "hash": "xxh3"},
        "documents": documents,
        "exact_duplicates": sum(r["exact_duplicates"] for r in report_rounds),
        "near_duplicates": sum(r["near_duplicates"] for r in report_rounds),
        "kept": remaining,
        "rounds": report_rounds,
        "seconds": round(seconds, 3),
        "documents_per_second": round(documents / seconds, 1) if seconds > 0 else None,
    }
    write_json(sidecar(output, "dedup"), report)
    return report


def summary(report: dict) -> str:
    """Human-readable lines for a report."""
    lines = [f"{report['documents']:,} documents -> {report['kept']:,} kept; removed "
             f"{report['exact_duplicates']:,} exact and {report['near_duplicates']:,} near "
             f"duplicates ({report['seconds']:.1f} s, {report['documents_per_second'] or 0:,.0f} "
             f"docs/s)"]
    for r in report["rounds"]:
        lines.append(f"  round {r['round']}: {r['documents']:,} documents in {r['buckets']:,} "
                     f"bucket(s): {r['exact_duplicates']:,} exact, {r['near_duplicates']:,} near")
    lines.append(f"report: {sidecar(report['output'], 'dedup')}")
    return "\n".join(lines)
