"""Train the SentencePiece Unigram tokenizer (65,280 pieces by default) and write its report.

    xm2-train-tokenizer --input data/demo/english.jsonl data/demo/code.jsonl \\
        --model-prefix out/tokenizer --vocab-size 32000 --heldout data/demo/ptb_test.txt
                                                     (also: python tools/train_tokenizer.py)

Writes OUT.model, OUT.vocab and OUT.report.json (settings, inputs, SHA-256, bytes/token); an
existing one of them is an error unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli
from xm2_megatron.data.tokenizer import DEFAULT_VOCAB_SIZE, report_path, train_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-train-tokenizer",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help=".jsonl (strings under --json-keys) or plain text (one text per line)")
    parser.add_argument("--model-prefix", required=True,
                        help="writes PREFIX.model, PREFIX.vocab, PREFIX.report.json")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--sample-cap", type=int, metavar="N",
                        help="train on a random sample of N lines (input_sentence_size)")
    parser.add_argument("--user-defined-symbols", nargs="*", default=[], metavar="SYMBOL")
    parser.add_argument("--heldout", metavar="FILE", help="report bytes per token on this file")
    parser.add_argument("--json-keys", nargs="+", default=["text"], metavar="KEY")
    parser.add_argument("--allow-smaller-vocab", action="store_true",
                        help="when the text cannot fill --vocab-size, keep the smaller vocabulary")
    parser.add_argument("--threads", type=int, help="training threads (default: all cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing PREFIX.model/.vocab/.report.json (by renames "
                             "once training succeeds); without it they are an error and kept")
    args = parser.parse_args(argv)
    report = run_cli(
        train_tokenizer, args.input, args.model_prefix, args.vocab_size,
        sample_cap=args.sample_cap, user_defined_symbols=args.user_defined_symbols,
        heldout=args.heldout, json_keys=args.json_keys,
        allow_smaller_vocab=args.allow_smaller_vocab, num_threads=args.threads,
        overwrite=args.overwrite)
    print(f"{args.model_prefix}.model: {report['vocab_size']:,} pieces, "
          f"{report['lines_sampled']:,} of {report['lines_total']:,} lines, "
          f"trained in {report['train_seconds']:.1f} s, sha256 {report['sha256'][:16]}...")
    if report["vocab_size"] < report["requested_vocab_size"]:
        print(f"warning: the text gave only {report['vocab_size']:,} of the "
              f"{report['requested_vocab_size']:,} pieces asked for")
    if report["heldout"]:
        held = report["heldout"]
        print(f"held-out {held['path']}: {held['bytes_per_token']:.3f} bytes/token "
              f"({held['bytes']:,} bytes, {held['tokens']:,} tokens)")
    print(f"report: {report_path(args.model_prefix)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
