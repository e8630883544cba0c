"""``python tools/decontaminate.py``: the same as the console script ``xm2-decontaminate``.

The tool lives in ``xm2_megatron.tools.decontaminate``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.decontaminate import main

if __name__ == "__main__":
    sys.exit(main())
