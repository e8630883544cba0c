"""``python tools/dedup.py``: the same as the console script ``xm2-dedup``.

The tool lives in ``xm2_megatron.tools.dedup``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.dedup import main

if __name__ == "__main__":
    sys.exit(main())
