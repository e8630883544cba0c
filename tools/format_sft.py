"""``python tools/format_sft.py``: the same as the console script ``xm2-format-sft``.

The tool lives in ``xm2_megatron.tools.format_sft``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.format_sft import main

if __name__ == "__main__":
    sys.exit(main())
