"""Tokenize JSON Lines into megatron-core indexed datasets (``.bin``/``.idx`` + ``.json`` sidecar).

    xm2-preprocess --input web.jsonl.gz --output-prefix data/tokens/web \\
        --tokenizer-model tokenizer.model --append-eod --workers 8
                                                     (also: python tools/preprocess_data.py)

writes ``data/tokens/web_text_document.{bin,idx,json}`` (an existing dataset there is an error
unless ``--overwrite``); ``--help`` lists every flag. ``--shard I/N`` tokenizes the I-th group of
the inputs into a shard dataset and ``--merge`` joins the shards (``slurm/preprocess.sh`` runs
both as Slurm jobs). The work is done by ``xm2_megatron.data.preprocess`` and
``xm2_megatron.data.preprocess_shards``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from xm2_megatron.cli import run_cli
from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess import preprocess
from xm2_megatron.data.preprocess_output import leftover_temporaries
from xm2_megatron.data.preprocess_shards import (
    merge_shards,
    parse_shard,
    shard_inputs,
    shard_prefix,
)
from xm2_megatron.data.tokenizer import file_sha256


MAX_DEFAULT_WORKERS = 32


def build_parser() -> argparse.ArgumentParser:
    default_workers = min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0)))
    parser = argparse.ArgumentParser(
        prog="xm2-preprocess",
        description="Tokenize JSON Lines into megatron-core indexed datasets. For each --json-keys "
                    "KEY it writes OUTPUT_PREFIX_KEY_document.bin/.idx (Megatron's naming: pass "
                    "OUTPUT_PREFIX_KEY_document as a data path) and a .json sidecar recording the "
                    "tokenizer's SHA-256, the inputs and the counts. Files appear only when the "
                    "run succeeds, and existing ones are replaced only with --overwrite. Memory "
                    "stays bounded whatever the input size.")
    parser.add_argument("--input", nargs="+", default=[], metavar="FILE",
                        help="JSON Lines file(s), plain or .gz, one JSON object per line, read in "
                             "order; blank lines are ignored")
    parser.add_argument("--input-list", metavar="FILE",
                        help="a text file naming one input file per line (after any --input), "
                             "for corpora of many files")
    parser.add_argument("--output-prefix", required=True, help="e.g. data/tokens/web")
    parser.add_argument("--tokenizer-model", help="SentencePiece .model file (required, except "
                                                  "with --merge, where it is checked if given)")
    parser.add_argument("--shard", metavar="INDEX/COUNT",
                        help="tokenize only the INDEX-th of COUNT contiguous groups of the input "
                             "files (from 0) into OUTPUT_PREFIX-shardINDEX-of-COUNT; "
                             "--merge then joins the shards")
    parser.add_argument("--merge", action="store_true",
                        help="concatenate the shards of OUTPUT_PREFIX (in order) into its "
                             "datasets, byte-identical to one run over the same inputs; with "
                             "--input the shards must cover exactly those files")
    parser.add_argument("--json-keys", nargs="+", default=["text"], metavar="KEY",
                        help="JSON keys to tokenize, one dataset each (default: text); a line "
                             "missing any of them is skipped")
    parser.add_argument("--append-eod", action="store_true",
                        help="end every document with the tokenizer's end-of-text id")
    parser.add_argument("--workers", type=int, default=default_workers, metavar="N",
                        help="tokenizer processes (default: the cores this process may use, at "
                             f"most {MAX_DEFAULT_WORKERS}, here {default_workers}). One more "
                             "process reads and writes, with about 5%% of the workers' CPU time. "
                             "Tokenization is the bottleneck, so throughput grows with workers "
                             "up to the cores available; the output is byte-identical for any "
                             "value")
    parser.add_argument("--strict", action="store_true",
                        help="fail at the first bad line (invalid JSON, missing key, non-string "
                             "or empty text) instead of skipping and counting it")
    parser.add_argument("--log-interval", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between progress lines when stderr is not a terminal "
                             "(a terminal gets a progress bar) (default: 10)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset at OUTPUT_PREFIX (by renames once the "
                             "run succeeds); without it an existing .bin/.idx/.json is an error "
                             "and nothing is touched")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    if len(set(args.json_keys)) != len(args.json_keys):
        parser.error(f"--json-keys has duplicates: {' '.join(args.json_keys)}")
    if args.shard and args.merge:
        parser.error("--shard and --merge are separate steps: tokenize each shard, then merge")
    inputs = args.input + (run_cli(_read_input_list, args.input_list) if args.input_list else [])
    if args.merge:
        return _merge(args, inputs)
    if not inputs:
        parser.error("no input: give --input FILE ... or --input-list FILE")
    if not args.tokenizer_model:
        parser.error("the following arguments are required: --tokenizer-model")
    output_prefix = args.output_prefix
    if args.shard:
        index, count = run_cli(parse_shard, args.shard)
        inputs = run_cli(shard_inputs, inputs, index, count)
        output_prefix = shard_prefix(output_prefix, index, count)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on ^C
    try:
        summary = run_cli(preprocess, inputs, output_prefix, args.tokenizer_model,
                          json_keys=args.json_keys, append_eod=args.append_eod,
                          workers=args.workers, strict=args.strict, log_interval=args.log_interval,
                          overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("error: interrupted; no dataset was written", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.format())
    if leftovers := leftover_temporaries(output_prefix, args.json_keys):
        print(f"note: {len(leftovers)} hidden temporary file(s) of interrupted or still running "
              f"runs lie beside the output (e.g. {leftovers[0]}); delete them once no run writes "
              f"{output_prefix}", file=sys.stderr)
    return 0


def _read_input_list(path: str) -> list[str]:
    """The file names in ``path``, one per line (blank lines and ``#`` comments ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read --input-list {path}: {e}") from None
    return [line for line in lines if line and not line.startswith("#")]


def _merge(args: argparse.Namespace, inputs: list[str]) -> int:
    sha = run_cli(file_sha256, args.tokenizer_model) if args.tokenizer_model else None
    written = run_cli(merge_shards, args.output_prefix, args.json_keys, inputs=inputs or None,
                      tokenizer_sha256=sha, overwrite=args.overwrite)
    for path in written:
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
