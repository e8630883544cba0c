"""Tokenize JSON Lines into megatron-core indexed datasets (``.bin``/``.idx`` + ``.json`` sidecar).

    xm2-preprocess --input web.jsonl.gz --output-prefix data/tokens/web \\
        --tokenizer-model tokenizer.model --append-eod --workers 8
                                                     (also: python tools/preprocess_data.py)

writes ``data/tokens/web_text_document.{bin,idx,json}`` (an existing dataset there is an error
unless ``--overwrite``); ``--help`` lists every flag. The work is done by
``xm2_megatron.data.preprocess``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from xm2_megatron.cli import run_cli
from xm2_megatron.data.preprocess import preprocess
from xm2_megatron.data.preprocess_output import leftover_temporaries


def build_parser() -> argparse.ArgumentParser:
    default_workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    parser = argparse.ArgumentParser(
        prog="xm2-preprocess",
        description="Tokenize JSON Lines into megatron-core indexed datasets. For each --json-keys "
                    "KEY it writes OUTPUT_PREFIX_KEY_document.bin/.idx (Megatron's naming: pass "
                    "OUTPUT_PREFIX_KEY_document as a data path) and a .json sidecar recording the "
                    "tokenizer's SHA-256, the inputs and the counts. Files appear only when the "
                    "run succeeds, and existing ones are replaced only with --overwrite. Memory "
                    "stays bounded whatever the input size.")
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="JSON Lines file(s), plain or .gz, one JSON object per line, read in "
                             "order; blank lines are ignored")
    parser.add_argument("--output-prefix", required=True, help="e.g. data/tokens/web")
    parser.add_argument("--tokenizer-model", required=True, help="SentencePiece .model file")
    parser.add_argument("--json-keys", nargs="+", default=["text"], metavar="KEY",
                        help="JSON keys to tokenize, one dataset each (default: text); a line "
                             "missing any of them is skipped")
    parser.add_argument("--append-eod", action="store_true",
                        help="end every document with the tokenizer's end-of-text id")
    parser.add_argument("--workers", type=int, default=default_workers, metavar="N",
                        help="tokenizer processes (default: cores - 1, at most 8, here "
                             f"{default_workers}). One more process reads and writes. "
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
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on ^C
    try:
        summary = run_cli(preprocess, args.input, args.output_prefix, args.tokenizer_model,
                          json_keys=args.json_keys, append_eod=args.append_eod,
                          workers=args.workers, strict=args.strict, log_interval=args.log_interval,
                          overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("error: interrupted; no dataset was written", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.format())
    if leftovers := leftover_temporaries(args.output_prefix, args.json_keys):
        print(f"note: {len(leftovers)} hidden temporary file(s) of interrupted or still running "
              f"runs lie beside the output (e.g. {leftovers[0]}); delete them once no run writes "
              f"{args.output_prefix}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
