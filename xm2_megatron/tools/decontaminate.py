"""Report and remove overlap between training data and every evaluation set
(xm2_megatron.data.decontaminate; the items: xm2_megatron.eval.contamination).

    xm2-decontaminate --input a.jsonl [b.jsonl.gz ...] --output-dir DIR [--sets NAME ...]
        [--json-key text | --json-key prompt response] [--ngram 13] [--containment 0.5]
        [--min-words 8] [--jaccard-threshold 0.5 | --no-minhash] [--num-perm 128]
        [--report-only]                              (also: python tools/decontaminate.py)

Writes DIR/<input name> for each input (its documents that contain no evaluation item, lines
unchanged, input order; not with --report-only) and DIR/decontamination.json (per set: items,
items found, documents; per input: documents read and removed; every hit: file, line, set,
item, detector); prints a one-paragraph summary. Bad input: one ``error:`` line naming the
file and line, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from xm2_megatron.cli import run_cli
from xm2_megatron.data import decontaminate as dc
from xm2_megatron.eval.contamination import check_sets, evaluation_items, set_names


def build_index(args: argparse.Namespace) -> dc.ContaminationIndex:
    """Check the arguments, then load the sets' items and index them."""
    dc.output_paths(args.input, args.output_dir)
    check_sets(args.sets)
    with tempfile.TemporaryDirectory(prefix="xm2-decontaminate-") as work:
        items = evaluation_items(Path(work), args.sets)
    return dc.ContaminationIndex(
        items, ngram=args.ngram, containment=args.containment, min_words=args.min_words,
        jaccard_threshold=None if args.no_minhash else args.jaccard_threshold,
        num_perm=args.num_perm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-decontaminate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, help="JSONL files, .gz allowed")
    parser.add_argument("--output-dir", required=True,
                        help="folder for the cleaned copies and decontamination.json")
    parser.add_argument("--sets", nargs="+", default=set_names(),
                        help="evaluation sets (default: all): " + ", ".join(set_names()))
    parser.add_argument("--json-key", nargs="+", default=["text"],
                        help="field(s) holding the document text; several are joined by "
                             "newlines (SFT records: --json-key prompt response)")
    parser.add_argument("--ngram", type=int, default=dc.DEFAULT_NGRAM,
                        help="words per n-gram")
    parser.add_argument("--containment", type=float, default=dc.DEFAULT_CONTAINMENT,
                        help="share of an item's distinct n-grams a document must hold")
    parser.add_argument("--min-words", type=int, default=dc.DEFAULT_MIN_WORDS,
                        help="items shorter than this are matched exactly only")
    parser.add_argument("--jaccard-threshold", type=float, default=dc.DEFAULT_JACCARD_THRESHOLD,
                        help="MinHash: a document this similar to an item (word bigrams) is a "
                             "near duplicate")
    parser.add_argument("--num-perm", type=int, default=dc.DEFAULT_NUM_PERM,
                        help="MinHash permutations")
    parser.add_argument("--no-minhash", action="store_true", help="exact and n-gram only")
    parser.add_argument("--report-only", action="store_true",
                        help="write only the report, no cleaned copies")
    args = parser.parse_args(argv)
    index = run_cli(build_index, args)
    key = args.json_key[0] if len(args.json_key) == 1 else args.json_key
    report = run_cli(dc.decontaminate_files, args.input, args.output_dir, index, json_key=key,
                     report_only=args.report_only)
    print(dc.summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
