"""Import a Hugging Face Granite or Llama folder as a trainer checkpoint (step 0).

    xm2-convert-from-hf --load hf/model --save checkpoints/model --tp 2 --pp 2 \\
        [--recipe xmodel2_1p2b] [optimizer.lr=1e-4 ...]   (also: python tools/convert_from_hf.py)

Fine-tune from it with ``xm2-train checkpoints/model/iter_0000000/config.yaml``. The work is
done by ``xm2_megatron.convert``; see docs/hf-conversion.md. Bad input prints one
``error: ...`` line naming the file or field and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli

DEFAULT_RECIPE = "xmodel2_1p2b"  # a packaged recipe (xm2_megatron/recipes/xmodel2_1p2b.yaml)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-convert-from-hf",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--load", required=True, help="Hugging Face model folder")
    parser.add_argument("--save", required=True, help="new checkpoint directory")
    parser.add_argument("--tp", type=int, default=1,
                        help="tensor-parallel size to train at (default 1)")
    parser.add_argument("--pp", type=int, default=1,
                        help="pipeline-parallel size to train at (default 1)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE,
                        help="recipe file or packaged recipe name for everything but the model "
                             "(default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optimizer.lr=1e-4")
    args = parser.parse_args(argv)
    from xm2_megatron.convert.importer import import_hf  # torch: after parsing

    step = run_cli(import_hf, args.load, args.save, args.tp, args.pp, args.recipe, args.overrides)
    print(f"imported {args.load} to {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
