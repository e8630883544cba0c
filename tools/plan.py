"""``python tools/plan.py``: the same as the console script ``xm2-plan``.

The tool lives in ``xm2_megatron.tools.plan``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.plan import main

if __name__ == "__main__":
    sys.exit(main())
