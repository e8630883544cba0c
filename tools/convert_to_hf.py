"""Export a trainer checkpoint (any TP/PP) to a Hugging Face Granite folder.

    python tools/convert_to_hf.py --load checkpoints/run --save hf/run [--tokenizer tok.model] [--dtype bf16]

The folder loads offline with ``AutoModelForCausalLM`` / ``AutoTokenizer``. The work is done
by ``xm2_megatron.convert``; see docs/hf-conversion.md.
"""

import sys

from xm2_megatron.convert.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
