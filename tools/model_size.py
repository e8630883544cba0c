"""``python tools/model_size.py``: the same as the console script ``xm2-model-size``.

The tool lives in ``xm2_megatron.tools.model_size``; ``--help`` lists its arguments.
"""

import sys

from xm2_megatron.tools.model_size import main

if __name__ == "__main__":
    sys.exit(main())
