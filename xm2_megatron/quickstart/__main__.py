"""``python -m xm2_megatron.quickstart``."""

import sys

from xm2_megatron.quickstart.pipeline import main

sys.exit(main())
