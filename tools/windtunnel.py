"""``python tools/windtunnel.py``: the same as the console script ``xm2-windtunnel``.

The tool lives in ``xm2_megatron.tools.windtunnel``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.windtunnel import main

if __name__ == "__main__":
    sys.exit(main())
