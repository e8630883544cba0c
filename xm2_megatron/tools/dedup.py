"""Remove exact and SimHash near-duplicate documents from JSONL files (xm2_megatron.data.dedup).

    xm2-dedup --input a.jsonl [b.jsonl.gz ...] --output out.jsonl [--json-key text]
        [--bucket-size 1000000] [--rounds N] [--hamming-threshold 3] [--shingle-size 2]
        [--exact-only]                                       (also: python tools/dedup.py)

Writes out.jsonl (the first occurrence of every document, lines unchanged, input order) and
out.dedup.json (counts removed as exact / near duplicates per round, and kept); prints them.
Bad input: one ``error:`` line naming the file and line, exit 2, no output.
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
    parser.add_argument("--bucket-size", type=int, default=dedup.DEFAULT_BUCKET_SIZE,
                        help="documents compared with each other per bucket")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of re-bucketing (default: hamming threshold + 1)")
    parser.add_argument("--hamming-threshold", type=int, default=dedup.DEFAULT_HAMMING_THRESHOLD,
                        help="max differing bits of two near-duplicate 64-bit SimHashes")
    parser.add_argument("--shingle-size", type=int, default=dedup.DEFAULT_SHINGLE_SIZE,
                        help="words (CJK: characters) per SimHash feature")
    parser.add_argument("--exact-only", action="store_true", help="remove exact duplicates only")
    args = parser.parse_args(argv)
    report = run_cli(dedup.dedup_files, args.input, args.output, json_key=args.json_key,
                     bucket_size=args.bucket_size, rounds=args.rounds,
                     hamming_threshold=args.hamming_threshold, shingle_size=args.shingle_size,
                     exact_only=args.exact_only)
    print(dedup.summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
