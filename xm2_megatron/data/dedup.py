"""Exact (xxh3 of the normalised text) and near-duplicate removal over JSONL, near duplicates
by MinHash LSH (default) or SimHash, in buckets of ``bucket_size`` documents, for several
rounds, streaming: ``dedup_files`` writes the output atomically and a JSON report beside it.
Features, thresholds, buckets and why the rounds find every pair: docs/sft-and-dedup.md."""

from __future__ import annotations

import heapq
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import xxhash

from xm2_megatron.data import minhash as mh
from xm2_megatron.data.dedup_text import (  # noqa: F401  (the text side, re-exported)
    DEFAULT_SHINGLE_SIZE,
    exact_hash,
    normalize,
    shingles,
)
from xm2_megatron.data.jsonl import (
    DataError,
    atomic_output,
    output_dir,
    read_jsonl,
    sidecar,
    where,
    write_json,
)
from xm2_megatron.data.simhash import (  # noqa: F401  (re-exported)
    BITS,
    DEFAULT_HAMMING_THRESHOLD,
    MAX_HAMMING_THRESHOLD,
    SimHashIndex,
    block_spans,
    bucket_of,
    fingerprint,
    hamming,
    simhash,
)

DEFAULT_BUCKET_SIZE = 1_000_000
DEFAULT_METHOD = "minhash"
METHODS = ("minhash", "simhash")
DEFAULT_JACCARD_THRESHOLD = mh.DEFAULT_JACCARD_THRESHOLD
DEFAULT_NUM_PERM = mh.DEFAULT_NUM_PERM


class _Exact:
    """Exact duplicates only: the key is the exact hash, one round."""

    name, rounds = "exact", 1

    def key(self, normalized: str, exact: int) -> str:
        return f"{exact & (2**BITS - 1):x}"

    def bucket(self, key: str, round_index: int, num_buckets: int) -> int:
        return xxhash.xxh3_64_intdigest(key) % num_buckets

    def scanner(self) -> Callable[[str], bool]:
        return lambda key: False

    def settings(self) -> dict:
        return {}

    def describe(self) -> str:
        return "exact only"

    def rounds_reason(self) -> str:
        return "exact duplicates always share a bucket"


class _SimHash:
    """Key: the hex fingerprint; round r buckets by block r of k + 1."""

    name = "simhash"

    def __init__(self, hamming_threshold: int, shingle_size: int):
        if not 0 <= hamming_threshold <= MAX_HAMMING_THRESHOLD:
            raise DataError(f"--hamming-threshold={hamming_threshold} must be in "
                            f"[0, {MAX_HAMMING_THRESHOLD}]")
        self.k, self.shingle_size = hamming_threshold, shingle_size
        self.spans = block_spans(hamming_threshold)
        self.rounds = len(self.spans)

    def key(self, normalized: str, exact: int) -> str:
        return f"{fingerprint(shingles(normalized, self.shingle_size)):x}"

    def bucket(self, key: str, round_index: int, num_buckets: int) -> int:
        return bucket_of(int(key, 16), self.spans[round_index], round_index, num_buckets)

    def scanner(self) -> Callable[[str], bool]:
        index = SimHashIndex(self.k)

        def near(key: str) -> bool:
            fp = int(key, 16)
            if index.contains_near(fp):
                return True
            index.add(fp)
            return False
        return near

    def settings(self) -> dict:
        return {"hamming_threshold": self.k, "shingle_size": self.shingle_size}

    def describe(self) -> str:
        return f"SimHash, Hamming distance <= {self.k}"

    def rounds_reason(self) -> str:
        return f"after {self.rounds} rounds every pair within distance {self.k} has shared a bucket"


class _MinHash:
    """Key: the base64 signature; round r buckets by LSH band r of b."""

    name = "minhash"

    def __init__(self, jaccard_threshold: float, num_perm: int, shingle_size: int):
        mh.check_settings(jaccard_threshold, num_perm)
        self.threshold, self.num_perm, self.shingle_size = jaccard_threshold, num_perm, shingle_size
        self.hasher = mh.MinHasher(num_perm, shingle_size)
        self.rounds, self.rows = mh.lsh_bands(jaccard_threshold, num_perm)

    def key(self, normalized: str, exact: int) -> str:
        return self.hasher.encode(self.hasher.of_normalized(normalized))

    def bucket(self, key: str, round_index: int, num_buckets: int) -> int:
        return mh.band_bucket(self.hasher.decode(key), round_index, self.rows, num_buckets)

    def scanner(self) -> Callable[[str], bool]:
        index = mh.MinHashIndex(self.threshold, self.num_perm, self.shingle_size,
                                keep_signatures=False)
        count = 0

        def near(key: str) -> bool:
            nonlocal count
            signature = self.hasher.decode(key)
            if index.contains_near(signature):
                return True
            index.add_signature(count, signature)
            count += 1
            return False
        return near

    def settings(self) -> dict:
        return {"jaccard_threshold": self.threshold, "num_perm": self.num_perm,
                "lsh_bands": self.rounds, "lsh_rows": self.rows,
                "shingle_size": self.shingle_size, "shingle_hash": mh.SHINGLE_HASH,
                "minhash_scheme": mh.SCHEME, "seed": mh.SEED}

    def describe(self) -> str:
        return (f"MinHash LSH, Jaccard >= {self.threshold}, {self.num_perm} permutations in "
                f"{self.rounds} bands of {self.rows}")

    def rounds_reason(self) -> str:
        return (f"after {self.rounds} rounds (one per LSH band) every pair sharing a band has "
                "shared a bucket")


Method = _Exact | _SimHash | _MinHash


def near_method(method: str = DEFAULT_METHOD, *, hamming_threshold: int | None = None,
                jaccard_threshold: float | None = None, num_perm: int | None = None,
                shingle_size: int = DEFAULT_SHINGLE_SIZE) -> Method:
    """The near-duplicate method's work-file keys, buckets and scan; an option of the other
    method is a ``DataError``."""
    if method not in METHODS:
        raise DataError(f"--method={method} must be one of {', '.join(METHODS)}")
    if shingle_size < 1:
        raise DataError(f"--shingle-size={shingle_size} must be at least 1")
    foreign = {"simhash": {"--jaccard-threshold": jaccard_threshold, "--num-perm": num_perm},
               "minhash": {"--hamming-threshold": hamming_threshold}}[method]
    for option, value in foreign.items():
        if value is not None:
            raise DataError(f"{option} does not apply to --method {method}")
    if method == "simhash":
        return _SimHash(DEFAULT_HAMMING_THRESHOLD if hamming_threshold is None
                        else hamming_threshold, shingle_size)
    return _MinHash(DEFAULT_JACCARD_THRESHOLD if jaccard_threshold is None else jaccard_threshold,
                    DEFAULT_NUM_PERM if num_perm is None else num_perm, shingle_size)


# A work line is "index<TAB>key<TAB>exact hash<TAB>original line": the index and exact hash in
# hex, the key the method's (a fingerprint or a signature).
def _work_line(index: int, key: str, exact: int, raw: str) -> str:
    return f"{index:x}\t{key}\t{exact:x}\t{raw}\n"


def _fields(line: str) -> tuple[int, str, int]:
    index, key, exact, _ = line.split("\t", 3)
    return int(index, 16), key, int(exact, 16)


def _index_key(line: str) -> int:
    return int(line.split("\t", 1)[0], 16)


def _ingest(inputs: Sequence[str], json_key: str, method: Method, out) -> int:
    """Validate and key every input document into a work file; return the count."""
    count = 0
    for line in read_jsonl(inputs):
        text = line.record.get(json_key)
        if not isinstance(text, str):
            problem = "has no" if json_key not in line.record else "has a non-string"
            raise DataError(f"{where(line.path, line.lineno)}: record {problem} {json_key!r} field")
        normalized = normalize(text)
        exact = exact_hash(normalized)
        out.write(_work_line(count, method.key(normalized, exact), exact, line.raw))
        count += 1
    return count


def _scan_bucket(lines: Iterator[str], method: Method, out) -> tuple[int, int]:
    """Write the bucket's lines that are neither exact nor near duplicates of an earlier one."""
    exact_seen: set[int] = set()
    near = method.scanner()
    exact_dups = near_dups = 0
    for line in lines:
        _, key, exact = _fields(line)
        if exact in exact_seen:
            exact_dups += 1
            continue
        exact_seen.add(exact)
        if near(key):
            near_dups += 1
            continue
        out.write(line)
    return exact_dups, near_dups


def _split(work_in: Path, paths: list[Path], method: Method, round_index: int) -> None:
    with ExitStack() as stack, open(work_in, encoding="utf-8") as f:
        outs = [stack.enter_context(open(p, "w", encoding="utf-8")) for p in paths]
        for line in f:
            outs[method.bucket(_fields(line)[1], round_index, len(paths))].write(line)


def _run_round(work_in: Path, work_out: Path, tmp: Path, round_index: int, num_buckets: int,
               method: Method) -> tuple[int, int]:
    """One round: split into buckets, scan each, merge the kept lines back in input order."""
    bucket_files = [work_in]
    if num_buckets > 1:
        bucket_files = [tmp / f"bucket-{b}" for b in range(num_buckets)]
        _split(work_in, bucket_files, method, round_index)
    exact_dups = near_dups = 0
    kept_files = []
    for b, path in enumerate(bucket_files):
        kept_files.append(tmp / f"kept-{b}")
        with open(path, encoding="utf-8") as f, open(kept_files[-1], "w", encoding="utf-8") as out:
            e, n = _scan_bucket(f, method, out)
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
                rounds: int | None = None, method: str = DEFAULT_METHOD,
                jaccard_threshold: float | None = None, num_perm: int | None = None,
                hamming_threshold: int | None = None, shingle_size: int = DEFAULT_SHINGLE_SIZE,
                exact_only: bool = False) -> dict:
    """Deduplicate ``inputs`` (JSONL, in order) into ``output``; write and return the report.

    Thresholds left None take the method's default (``--jaccard-threshold 0.7``,
    ``--num-perm 128``; ``--hamming-threshold 3``). ``rounds`` defaults to the method's
    most: one per LSH band, k + 1 for SimHash, 1 with ``exact_only``.
    """
    if bucket_size < 1:
        raise DataError(f"--bucket-size={bucket_size} must be at least 1")
    near = near_method(method, hamming_threshold=hamming_threshold,
                       jaccard_threshold=jaccard_threshold, num_perm=num_perm,
                       shingle_size=shingle_size)
    chosen = _Exact() if exact_only else near
    rounds = chosen.rounds if rounds is None else rounds
    if not 1 <= rounds <= chosen.rounds:
        raise DataError(f"--rounds={rounds} must be in [1, {chosen.rounds}]: "
                        + chosen.rounds_reason())
    inputs = [str(p) for p in inputs]
    output = Path(output)
    start = time.perf_counter()
    report_rounds = []
    with tempfile.TemporaryDirectory(dir=output_dir(output), prefix=".dedup-") as tmp_name:
        tmp = Path(tmp_name)
        work = tmp / "work-0"
        with open(work, "w", encoding="utf-8") as f:
            documents = remaining = _ingest(inputs, json_key, chosen, f)
        for r in range(rounds):
            num_buckets = max(1, math.ceil(remaining / bucket_size))
            next_work = tmp / f"work-{r + 1}"
            exact_dups, near_dups = _run_round(work, next_work, tmp, r, num_buckets, chosen)
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
        "method": chosen.describe(),
        "settings": {"json_key": json_key, "bucket_size": bucket_size, "rounds": rounds,
                     "method": chosen.name, "exact_only": exact_only, **chosen.settings(),
                     "normalization": "NFKC+whitespace", "hash": "xxh3"},
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
             f"duplicates ({report['method']}; {report['seconds']:.1f} s, "
             f"{report['documents_per_second'] or 0:,.0f} docs/s)"]
    for r in report["rounds"]:
        lines.append(f"  round {r['round']}: {r['documents']:,} documents in {r['buckets']:,} "
                     f"bucket(s): {r['exact_duplicates']:,} exact, {r['near_duplicates']:,} near")
    lines.append(f"report: {sidecar(report['output'], 'dedup')}")
    return "\n".join(lines)
