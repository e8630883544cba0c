"""``python tools/train_tokenizer.py``: the same as the console script ``xm2-train-tokenizer``.

The tool lives in ``xm2_megatron.tools.train_tokenizer``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.train_tokenizer import main

if __name__ == "__main__":
    sys.exit(main())
