"""``python tools/preprocess_data.py``: the same as the console script ``xm2-preprocess``.

The tool lives in ``xm2_megatron.tools.preprocess_data``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.preprocess_data import main

if __name__ == "__main__":
    sys.exit(main())
