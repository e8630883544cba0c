"""Import a Hugging Face Granite or Llama folder as a trainer checkpoint (step 0).

    python tools/convert_from_hf.py --load hf/model --save checkpoints/model --tp 2 --pp 2 \\
        [--recipe recipes/xmodel2_1p2b.yaml] [optimizer.lr=1e-4 ...]

Fine-tune from it with ``python -m xm2_megatron.train checkpoints/model/iter_0000000/config.yaml``.
The work is done by ``xm2_megatron.convert``; see docs/hf-conversion.md.
"""

import sys

from xm2_megatron.convert.cli import import_main

if __name__ == "__main__":
    sys.exit(import_main())
