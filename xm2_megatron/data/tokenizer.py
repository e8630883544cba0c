"""The Xmodel-2 tokenizer: SentencePiece Unigram training (with a JSON report) and a thin
wrapper that preprocessing and training load.

``train_tokenizer(["english.jsonl"], "out/tokenizer")`` writes ``out/tokenizer.model``,
``out/tokenizer.vocab`` and ``out/tokenizer.report.json`` (settings, inputs, SHA-256 of the
model: the identity datasets record). Inputs are ``.jsonl`` files (the strings under
``json_keys``) or plain text (one text per line). Texts are cut into lines of at most
``MAX_SENTENCE_BYTES`` (SentencePiece silently skips longer ones) and streamed through a
temporary file. Normalization is the identity and whitespace is kept, so
``decode(encode(text)) == text`` for code and full-width characters alike; unseen
characters fall back to bytes and digits are split.

An existing ``.model``, ``.vocab`` or report at the prefix is never replaced unless
``overwrite=True`` (``--overwrite``): without it the run fails with one ``TokenizerError``
line before reading any input.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import sentencepiece as spm

from xm2_megatron import atomic
from xm2_megatron.data.jsonl import DataError, read_jsonl, where, write_json

DEFAULT_VOCAB_SIZE = 65_280
MAX_SENTENCE_BYTES = 4192  # SentencePiece's default max_sentence_length
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, -1
REPORT_SUFFIX = ".report.json"

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_FEW_CHARS = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
_SENTENCE_END = re.compile(r"(?<=[.!?;])(?=\s)|(?<=[。！？；])")


class TokenizerError(DataError):
    """Bad tokenizer input or settings; the message names the file (and line). A
    ``DataError`` (so a ``UserError``): ``run_cli`` prints one ``error:`` line, exit 2."""


# ---------------------------------------------------------------- reading inputs

def is_jsonl(path: Path | str) -> bool:
    return str(path).endswith((".jsonl", ".jsonl.gz"))


def iter_texts(path: Path | str, json_keys: Sequence[str] = ("text",)) -> Iterator[str]:
    """The texts of one input: for ``.jsonl[.gz]`` the string under each of ``json_keys``
    that a record has (at least one must be there), else each line. Blank lines are skipped."""
    if is_jsonl(path):
        for line in read_jsonl([path]):
            yield from _record_texts(line.record, json_keys, where(line.path, line.lineno))
    else:
        yield from _text_lines(Path(path))


def _text_lines(path: Path) -> Iterator[str]:
    """Non-blank lines of a UTF-8 text file (``.gz`` read compressed), decoded line by line
    so that an error names the right line."""
    if not path.is_file():
        raise TokenizerError(f"input file {path} does not exist" if not path.exists()
                             else f"input {path} is not a file")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise TokenizerError(
                    f"{where(path, lineno)}: not valid UTF-8 ({e.reason})") from None
            if line.strip():
                yield line


def _record_texts(record: dict, json_keys: Sequence[str], at: str) -> list[str]:
    texts = []
    for key in json_keys:
        if key in record:
            if not isinstance(record[key], str):
                raise TokenizerError(f"{at}: '{key}' is {type(record[key]).__name__}, "
                                     f"expected a string")
            texts.append(record[key])
    if not texts:
        wanted = " or ".join(f"'{k}'" for k in json_keys)
        raise TokenizerError(f"{at}: record has no {wanted} key (it has "
                             f"{', '.join(map(repr, record)) or 'none'}; choose with --json-keys)")
    return texts


def training_lines(text: str, max_bytes: int = MAX_SENTENCE_BYTES) -> Iterator[str]:
    """The non-blank lines of ``text``; a line over ``max_bytes`` (UTF-8) is cut at sentence
    ends into chunks that fit, and a sentence that still does not fit is cut anywhere."""
    for line in text.split("\n"):
        line = line.rstrip()
        if not line.strip():
            continue
        if len(line.encode("utf-8")) <= max_bytes:
            yield line
            continue
        chunk = ""
        for piece in _SENTENCE_END.split(line):
            if len((chunk + piece).encode("utf-8")) <= max_bytes:
                chunk += piece
                continue
            if chunk.strip():
                yield chunk.strip()
            chunk = ""
            while len(piece.encode("utf-8")) > max_bytes:
                head = piece.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
                yield head
                piece = piece[len(head):]
            chunk = piece
        if chunk.strip():
            yield chunk.strip()


@dataclass
class InputStats:
    """What one input file gave to training."""

    path: str
    texts: int
    lines: int


def write_training_lines(inputs: Sequence[Path], json_keys: Sequence[str],
                         out: IO[str]) -> list[InputStats]:
    """Write every input's training lines to the text file ``out``; every input must hold
    some text."""
    stats = []
    for path in inputs:
        texts = lines = 0
        for text in iter_texts(path, json_keys):
            texts += 1
            for line in training_lines(text):
                out.write(line + "\n")
                lines += 1
        if lines == 0:
            raise TokenizerError(f"input {path} holds no text" + (
                f" under {', '.join(map(repr, json_keys))}" if is_jsonl(path) else ""))
        stats.append(InputStats(str(path), texts, lines))
    return stats


# ---------------------------------------------------------------- the tokenizer

def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Tokenizer:
    """A trained SentencePiece model: ids in, ids out, and its identity (SHA-256 of the file)."""

    def __init__(self, model_path: Path | str):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise TokenizerError(f"tokenizer model {self.path} does not exist")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"cannot load tokenizer model {self.path}: {e}") from None
        self.sha256 = file_sha256(self.path)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str], num_threads: int = -1) -> list[list[int]]:
        """``encode`` over many texts, in SentencePiece's own threads."""
        return self._sp.encode(texts, num_threads=num_threads)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(token_id)


def bytes_per_token(tokenizer: Tokenizer, path: Path, json_keys: Sequence[str] = ("text",)) -> dict:
    """UTF-8 bytes per token over the texts of ``path`` (each line of a text file, or each
    record's text; newlines between lines are not counted)."""
    n_bytes = n_tokens = 0
    for text in iter_texts(path, json_keys):
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tokenizer.encode(text))
    if n_tokens == 0:
        raise TokenizerError(f"held-out file {path} holds no text")
    return {"path": str(path), "bytes": n_bytes, "tokens": n_tokens,
            "bytes_per_token": round(n_bytes / n_tokens, 4)}


# ---------------------------------------------------------------- training

def trainer_settings(vocab_size: int, sample_cap: int | None = None,
                     user_defined_symbols: Sequence[str] = (), allow_smaller_vocab: bool = False,
                     num_threads: int | None = None) -> dict:
    """The SentencePiece trainer arguments of an Xmodel-2 tokenizer (recorded in the report)."""
    return {
        "model_type": "unigram",
        "vocab_size": vocab_size,
        "character_coverage": 0.9999,
        "byte_fallback": True,
        "split_digits": True,
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "allow_whitespace_only_pieces": True,
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "pad_id": PAD_ID,
        "user_defined_symbols": list(user_defined_symbols),
        "input_sentence_size": sample_cap or 0,
        "shuffle_input_sentence": True,
        "max_sentence_length": MAX_SENTENCE_BYTES,
        "hard_vocab_limit": not allow_smaller_vocab,
        "num_threads": num_threads or os.cpu_count() or 1,
    }


def _check_arguments(inputs: Sequence[Path], vocab_size: int, sample_cap: int | None,
                     user_defined_symbols: Sequence[str], heldout: Path | None) -> None:
    if not inputs:
        raise TokenizerError("no input files given")
    reserved = 3 + len(user_defined_symbols)
    if vocab_size <= reserved:
        raise TokenizerError(f"--vocab-size {vocab_size} must exceed the {reserved} special and "
                             f"user-defined pieces")
    if sample_cap is not None and sample_cap <= 100:
        raise TokenizerError(f"--sample-cap {sample_cap} must be more than 100 lines "
                             f"(SentencePiece's minimum)")
    if heldout is not None and not Path(heldout).is_file():
        raise TokenizerError(f"held-out file {heldout} does not exist")


def _train_error(e: RuntimeError, vocab_size: int, inputs: Sequence[Path]) -> TokenizerError:
    """SentencePiece's failure as a message that says what to change."""
    names = ", ".join(map(str, inputs))
    if m := _TOO_HIGH.search(str(e)):
        return TokenizerError(
            f"the inputs ({names}) hold too little varied text for a {vocab_size:,}-piece "
            f"vocabulary: SentencePiece finds at most {int(m.group(2)):,} pieces. Use "
            f"--vocab-size {m.group(2)} or smaller, add more text, or pass --allow-smaller-vocab "
            f"to keep the vocabulary it finds")
    if m := _TOO_FEW_CHARS.search(str(e)):
        return TokenizerError(
            f"--vocab-size {vocab_size} is below the {m.group(2)} pieces the inputs ({names}) "
            f"need at least (one per character at character_coverage 0.9999, the 256 byte "
            f"pieces and the special pieces): raise --vocab-size")
    return TokenizerError(f"SentencePiece training failed: {' '.join(str(e).split())}")


def report_path(model_prefix: Path | str) -> Path:
    return Path(f"{model_prefix}{REPORT_SUFFIX}")


def output_files(model_prefix: Path | str) -> list[Path]:
    """What training writes: ``<prefix>.model``, ``.vocab`` and the report."""
    return [Path(f"{model_prefix}.model"), Path(f"{model_prefix}.vocab"), report_path(model_prefix)]


def refuse_existing(model_prefix: Path | str) -> None:
    """``TokenizerError`` (one line) if any output of this prefix exists already."""
    existing = [str(p) for p in output_files(model_prefix) if os.path.lexists(p)]
    if existing:
        one = len(existing) == 1
        raise TokenizerError(f"{', '.join(existing)} already exist{'s' if one else ''}: pass "
                             f"--overwrite to replace {'it' if one else 'them'}, or choose "
                             "another --model-prefix")


def train_tokenizer(
    inputs: Sequence[Path | str],
    model_prefix: Path | str,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    *,
    sample_cap: int | None = None,
    user_defined_symbols: Sequence[str] = (),
    heldout: Path | str | None = None,
    json_keys: Sequence[str] = ("text",),
    allow_smaller_vocab: bool = False,
    num_threads: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Train a Unigram tokenizer on ``inputs`` and write ``<prefix>.model``, ``.vocab`` and
    ``.report.json``; returns the report. Nothing is written unless training succeeds (the
    files appear by renames, the report last). An existing output is a ``TokenizerError``
    before any work unless ``overwrite``; then the old report is removed first, so a report
    never describes a model it did not come with."""
    inputs = [Path(p) for p in inputs]
    _check_arguments(inputs, vocab_size, sample_cap, user_defined_symbols, heldout)
    if not overwrite:
        refuse_existing(model_prefix)
    if heldout is not None:
        for _ in iter_texts(Path(heldout), json_keys):  # a bad held-out file fails before training
            pass
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    settings = trainer_settings(vocab_size, sample_cap, user_defined_symbols,
                                allow_smaller_vocab, num_threads)
    with (atomic.disk_full_reported(prefix.parent, f"{prefix.name}.model was not written (the "
                                    "temporary files are removed)"),
          tempfile.TemporaryDirectory(dir=prefix.parent, prefix=f".{prefix.name}.") as tmp):
        lines_file = Path(tmp) / "lines.txt"
        with open(lines_file, "w", encoding="utf-8", newline="\n") as out:
            stats = write_training_lines(inputs, json_keys, out)
        start = time.perf_counter()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(input=str(lines_file), minloglevel=2,
                                           model_prefix=f"{tmp}/{prefix.name}", **settings)
        except RuntimeError as e:
            raise _train_error(e, vocab_size, inputs) from None
        train_seconds = time.perf_counter() - start
        tokenizer = Tokenizer(f"{tmp}/{prefix.name}.model")
        total = sum(s.lines for s in stats)
        report = {
            "model": f"{prefix.name}.model",
            "sha256": tokenizer.sha256,
            "vocab_size": tokenizer.vocab_size,
            "requested_vocab_size": vocab_size,
            "special_ids": {"unk": tokenizer.unk_id, "bos": tokenizer.bos_id,
                            "eos": tokenizer.eos_id, "pad": tokenizer.pad_id},
            "settings": {**settings, "seed": seed, "json_keys": list(json_keys)},
            "sentencepiece_version": spm.__version__,
            "inputs": [asdict(s) for s in stats],
            "lines_total": total,
            "lines_sampled": min(total, sample_cap) if sample_cap else total,
            "train_seconds": round(train_seconds, 2),
            "heldout": bytes_per_token(tokenizer, Path(heldout), json_keys) if heldout else None,
        }
        if overwrite:
            report_path(prefix).unlink(missing_ok=True)
        else:
            refuse_existing(prefix)  # another run may have finished meanwhile
        write_json(report_path(f"{tmp}/{prefix.name}"), report)  # every byte written first:
        for suffix in (".vocab", ".model", REPORT_SUFFIX):  # then only renames, report last
            atomic.commit_file(f"{tmp}/{prefix.name}{suffix}", f"{prefix}{suffix}")
    return report

