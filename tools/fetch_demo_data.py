"""``python tools/fetch_demo_data.py``: the same as the console script ``xm2-fetch-demo-data``.

The tool lives in ``xm2_megatron.tools.fetch_demo_data``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.fetch_demo_data import main

if __name__ == "__main__":
    sys.exit(main())
