"""``python tools/convert_from_hf.py``: the same as the console script ``xm2-convert-from-hf``.

The tool lives in ``xm2_megatron.tools.convert_from_hf``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.convert_from_hf import main

if __name__ == "__main__":
    sys.exit(main())
