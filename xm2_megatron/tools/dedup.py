"""Remove exact and near-duplicate documents from JSONL files (xm2_megatron.data.dedup).

    xm2-dedup --input a.jsonl [b.jsonl.gz ...] --output out.jsonl [--json-key text]
        [--method minhash] [--jaccard-threshold 0.7] [--num-perm 128]
        [--method simhash --hamming-threshold 3] [--shingle-size 2]
        [--bucket-size 1000000] [--rounds N] [--exact-only]     (also: python tools/dedup.py)

Writes out.jsonl (the first occurrence of every document, lines unchanged, input order) and
out.dedup.json (the method and its settings, counts removed as exact / near duplicates per
round, and kept); prints them. Bad input or settings: one ``error:`` line, exit 2, no output.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli
from xm2_megatron.data import dedup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files, .gz allowed")
    parser.add_argument("--output", required=True, help="deduplicated JSONL (.gz to compress)")
    parser.add_argument("--json-key", default="text", help="field holding the document text")
    parser.add_argument("--method", choices=dedup.METHODS, default=dedup.DEFAULT_METHOD,
                        help="near duplicates by MinHash LSH (Jaccard) or SimHash (Hamming)")
    parser.add_argument("--jaccard-threshold", type=float, default=None,
                        help="minhash: Jaccard similarity of shingle sets the LSH is tuned to "
                             f"(default {dedup.DEFAULT_JACCARD_THRESHOLD}; 0.5 for "
                             "decontamination)")
    parser.add_argument("--num-perm", type=int, default=None,
                        help=f"minhash: permutations per signature "
                             f"(default {dedup.DEFAULT_NUM_PERM})")
    parser.add_argument("--hamming-threshold", type=int, default=None,
                        help="simhash: max differing bits of two near-duplicate 64-bit SimHashes "
                             f"(default {dedup.DEFAULT_HAMMING_THRESHOLD})")
    parser.add_argument("--shingle-size", type=int, default=dedup.DEFAULT_SHINGLE_SIZE,
                        help="words (CJK: characters) per shingle")
    parser.add_argument("--bucket-size", type=int, default=dedup.DEFAULT_BUCKET_SIZE,
                        help="documents compared with each other per bucket")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of re-bucketing (default: LSH bands, or hamming threshold "
                             "+ 1)")
    parser.add_argument("--exact-only", action="store_true", help="remove exact duplicates only")
    args = parser.parse_args(argv)
    report = run_cli(dedup.dedup_files, args.input, args.output, json_key=args.json_key,
                     bucket_size=args.bucket_size, rounds=args.rounds, method=args.method,
                     jaccard_threshold=args.jaccard_threshold, num_perm=args.num_perm,
                     hamming_threshold=args.hamming_threshold, shingle_size=args.shingle_size,
                     exact_only=args.exact_only)
    print(dedup.summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
