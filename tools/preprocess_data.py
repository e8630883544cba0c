"""Tokenize JSON Lines into megatron-core indexed datasets (``.bin``/``.idx`` + ``.json`` sidecar).

    python tools/preprocess_data.py --input web.jsonl.gz --output-prefix data/tokens/web \\
        --tokenizer-model tokenizer.model --append-eod --workers 8

writes ``data/tokens/web_text_document.{bin,idx,json}``; ``--help`` lists every flag. The work
is done by ``xm2_megatron.data.preprocess``.
"""

from xm2_megatron.data.preprocess import main

if __name__ == "__main__":
    main()
