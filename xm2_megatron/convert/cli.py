"""Command lines of ``tools/convert_to_hf.py`` and ``tools/convert_from_hf.py``.

Bad input prints one ``error: ...`` line naming the file or field and exits 2.
"""

from __future__ import annotations

import argparse

from xm2_megatron.config import run_cli


def export_main(argv: list[str] | None = None) -> int:
    """``convert_to_hf.py --load CHECKPOINT_DIR --save HF_DIR [--tokenizer M] [--dtype D]``."""
    from xm2_megatron.convert.export import DTYPES, export_checkpoint

    parser = argparse.ArgumentParser(prog="convert_to_hf.py", description=(
        "Export a trainer checkpoint (any TP/PP) to a Hugging Face Granite folder."))
    parser.add_argument("--load", required=True, help="checkpoint directory or one iter_* folder")
    parser.add_argument("--save", required=True, help="new folder for the Hugging Face model")
    parser.add_argument("--tokenizer", help="SentencePiece .model (default: the run's data.tokenizer_model)")
    parser.add_argument("--dtype", choices=sorted(DTYPES),
                        help="weights' dtype (default: the run's, bf16 for bf16/fp8 runs)")
    args = parser.parse_args(argv)
    step = run_cli(export_checkpoint, args.load, args.save, args.tokenizer, args.dtype)
    print(f"exported {step} to {args.save}")
    return 0


def import_main(argv: list[str] | None = None) -> int:
    """``convert_from_hf.py --load HF_DIR --save CHECKPOINT_DIR [--tp N --pp M] [--recipe R] [key=value ...]``."""
    from xm2_megatron.convert.importer import DEFAULT_RECIPE, import_hf

    parser = argparse.ArgumentParser(prog="convert_from_hf.py", description=(
        "Import a Hugging Face Granite or Llama folder as a trainer checkpoint (step 0)."))
    parser.add_argument("--load", required=True, help="Hugging Face model folder")
    parser.add_argument("--save", required=True, help="new checkpoint directory")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size to train at (default 1)")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel size to train at (default 1)")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE),
                        help="recipe for everything but the model (default: recipes/xmodel2_1p2b.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optimizer.lr=1e-4")
    args = parser.parse_args(argv)
    step = run_cli(import_hf, args.load, args.save, args.tp, args.pp, args.recipe, args.overrides)
    print(f"imported {args.load} to {step}")
    return 0
