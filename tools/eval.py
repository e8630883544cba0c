"""``python tools/eval.py``: the same as the console script ``xm2-eval``.

The tool lives in ``xm2_megatron.tools.eval``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.eval import main

if __name__ == "__main__":
    sys.exit(main())
