"""Render instruction data into categorised training text (xm2_megatron.data.sft).

    xm2-format-sft --input gsm8k.jsonl [mbpp.jsonl ...] --output sft.jsonl
        [--category-from-field category] [--source-field source] [--source NAME]
        [--default-category knowledge] [--no-diversify]     (also: python tools/format_sft.py)

Writes sft.jsonl ({"text", "category", "source"} per line) and sft.stats.json (counts per
category, source and prompt rewrite); prints the counts per category.
Bad input: one ``error:`` line naming the file and line, exit 2, no output.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli
from xm2_megatron.data import sft
from xm2_megatron.data.jsonl import sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-format-sft", description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files, .gz allowed")
    parser.add_argument("--output", required=True, help="formatted JSONL (.gz to compress)")
    parser.add_argument("--category-from-field", default="category", metavar="FIELD",
                        help="record field holding the category")
    parser.add_argument("--source-field", default="source", metavar="FIELD",
                        help="record field holding the source name")
    parser.add_argument("--source", default=None,
                        help="source name of records without one (default: the file's name)")
    parser.add_argument("--default-category", default=None, choices=sft.CATEGORIES,
                        help="category of records no rule categorises")
    parser.add_argument("--no-diversify", action="store_true",
                        help="keep prompts as given (no rule-based rewrites)")
    args = parser.parse_args(argv)
    counts = run_cli(sft.format_file, args.input, args.output,
                     category_field=args.category_from_field, source_field=args.source_field,
                     source=args.source, default_category=args.default_category,
                     diversify=not args.no_diversify)
    print(f"{sum(counts.values()):,} records: "
          + ", ".join(f"{cat} {n:,}" for cat, n in counts.items()))
    print(f"stats: {sidecar(args.output, 'stats')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
