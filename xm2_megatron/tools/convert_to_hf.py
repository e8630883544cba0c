"""Export a trainer checkpoint (any TP/PP) to a Hugging Face Granite folder.

    xm2-convert-to-hf --load checkpoints/run --save hf/run [--tokenizer tok.model] [--dtype bf16]
                                                     (also: python tools/convert_to_hf.py)

The folder loads offline with ``AutoModelForCausalLM`` / ``AutoTokenizer``. The work is done
by ``xm2_megatron.convert``; see docs/hf-conversion.md. Bad input prints one ``error: ...``
line naming the file or field and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli

DTYPE_CHOICES = ("bf16", "fp32")  # xm2_megatron.convert.export.DTYPES, without importing torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-convert-to-hf", description=__doc__.splitlines()[0])
    parser.add_argument("--load", required=True, help="checkpoint directory or one iter_* folder")
    parser.add_argument("--save", required=True, help="new folder for the Hugging Face model")
    parser.add_argument("--tokenizer",
                        help="SentencePiece .model (default: the run's data.tokenizer_model)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES,
                        help="weights' dtype (default: the run's, bf16 for bf16/fp8 runs)")
    args = parser.parse_args(argv)
    from xm2_megatron.convert.export import export_checkpoint  # torch: after parsing

    step = run_cli(export_checkpoint, args.load, args.save, args.tokenizer, args.dtype)
    print(f"exported {step} to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
