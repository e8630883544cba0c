"""Export the SentencePiece Unigram tokenizer so that ``AutoTokenizer`` loads it offline.

transformers 5.x always loads a ``tokenizers`` (Rust) tokenizer. ``SpmConverter`` in
transformers builds one from the SentencePiece model's own settings (Unigram pieces and
scores, byte fallback, identity normalisation, dummy prefix, whitespace kept); it is written as
``tokenizer.json`` next to the original ``tokenizer.model``. No BOS or EOS is added to encoded
text, as in training (``preprocess`` writes no BOS and appends EOS per document on request).

Known differences from ``sentencepiece`` itself: the literal strings ``<unk>``, ``<s>``,
``</s>`` and byte-piece names such as ``<0x0A>`` in text are read as those pieces (as in
every Hugging Face SentencePiece conversion), and in long texts a tie between two
segmentations of equal score can be broken the other way (the two libraries accumulate
scores with different rounding); both segmentations decode to the same text. See ``docs/hf-conversion.md`` for the measured rate.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter

from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.data.tokenizer import Tokenizer


def _special(tokenizer: Tokenizer, token_id: int) -> str | None:
    return tokenizer.id_to_piece(token_id) if token_id >= 0 else None


def tokenizer_files(model_path: str | Path, vocab_size: int, max_length: int) -> dict[str, str | bytes]:
    """The files of a Hugging Face tokenizer for ``model_path``: name -> contents."""
    tokenizer = Tokenizer(model_path)
    if tokenizer.vocab_size != vocab_size:
        raise ConversionError(f"tokenizer {model_path} has {tokenizer.vocab_size} pieces but the "
                              f"model's vocabulary is {vocab_size} (model.vocab_size)")
    proto = SentencePieceExtractor(str(model_path)).proto
    if proto.trainer_spec.model_type != 1:
        raise ConversionError(f"tokenizer {model_path} is not a Unigram SentencePiece model")
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    fast = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    config = {
        "tokenizer_class": "TokenizersBackend",
        "unk_token": _special(tokenizer, tokenizer.unk_id),
        "bos_token": _special(tokenizer, tokenizer.bos_id),
        "eos_token": _special(tokenizer, tokenizer.eos_id),
        "pad_token": _special(tokenizer, tokenizer.pad_id),
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
    }
    return {
        "tokenizer.model": Path(model_path).read_bytes(),
        "tokenizer.json": fast.to_str(pretty=True),
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
    }


def write_tokenizer(model_path: str | Path, folder: Path, vocab_size: int, max_length: int) -> None:
    """Write the tokenizer files into ``folder`` (the caller makes the folder appear atomically)."""
    for name, contents in tokenizer_files(model_path, vocab_size, max_length).items():
        if isinstance(contents, bytes):
            (folder / name).write_bytes(contents)
        else:
            (folder / name).write_text(contents, encoding="utf-8")
