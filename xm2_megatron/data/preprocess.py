"""JSON Lines -> megatron-core indexed datasets (``.bin``/``.idx``), streaming, in parallel.

``preprocess(["a.jsonl.gz"], "out/web", "tok.model", append_eod=True, workers=4)`` writes
``out/web_text_document.bin/.idx`` (Megatron's ``<prefix>_<key>_document`` naming) with
megatron-core's ``IndexedDatasetBuilder`` and a ``.json`` sidecar naming the tokenizer.

Pipeline: the main process reads ~1 MiB chunks of raw lines; a pool of ``workers`` processes
parses and tokenizes whole chunks (one batched SentencePiece call per chunk) and returns
numpy token arrays; the main process writes each chunk with one write, in input order, so
the output is byte-identical for any worker count. At most ``2 * workers + 2`` chunks are in
flight, so memory does not grow with the input (``Pool.imap`` would read the whole input
ahead of slow workers). Outputs are written under temporary names and renamed at the end:
an interrupted run never leaves a ``.bin``/``.idx`` pair that looks complete.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from xm2_megatron.config import run_cli
from xm2_megatron.data.jsonl import DataError, where, write_json
from xm2_megatron.data.tokenizer import Tokenizer

CHUNK_BYTES = 1 << 20
TMP = ".tmp"  # suffix of the files a run writes before it commits them
EXAMPLES = 5  # line numbers shown per skip reason
METADATA_FORMAT = "xm2-megatron indexed dataset 1"


def _indexed_dataset():
    """megatron-core's indexed dataset module, imported on first use: it pulls in torch, which
    the tokenizer workers never need."""
    from megatron.core.datasets import indexed_dataset

    return indexed_dataset


def dataset_prefix(output_prefix: str, key: str) -> str:
    """``OUT/name`` + ``text`` -> ``OUT/name_text_document``, Megatron's naming."""
    return f"{output_prefix}_{key}_document"


# ----------------------------------------------------------------------------- reading


class _Chunk(NamedTuple):
    file_index: int
    first_line: int  # 1-based number of lines[0] in its file
    position: int  # bytes of the file (compressed, for .gz) consumed after this chunk
    lines: list[bytes]


def _read_chunks(paths: Sequence[str], chunk_bytes: int) -> Iterator[_Chunk]:
    """Raw lines of ``paths`` in order, in chunks of about ``chunk_bytes``."""
    for file_index, path in enumerate(paths):
        line = 1
        try:
            with open(path, "rb") as raw:
                stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
                while lines := stream.readlines(chunk_bytes):
                    yield _Chunk(file_index, line, raw.tell(), lines)
                    line += len(lines)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read {path} after line {line - 1}: {e}") from None


# ----------------------------------------------------------------------------- workers


class _Skip(Exception):
    """A line that is not a document; the message is the reason."""


class _ChunkResult(NamedTuple):
    file_index: int
    position: int
    tokens: list[np.ndarray]  # per JSON key: the chunk's documents, concatenated
    lengths: list[np.ndarray]  # per JSON key: tokens per document
    bad: list[tuple[int, str]]  # (line number, reason)
    blank: int


_worker: dict = {}


def _init_worker(model_path: str, keys: Sequence[str], eod_id: int | None) -> None:
    _worker.update(tokenizer=Tokenizer(model_path), keys=keys, eod_id=eod_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the CLI's cleanup handler is not ours
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the main process is gone (after SIGKILL it cannot say so)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _extract(line: bytes, keys: Sequence[str]) -> list[str]:
    """The texts under ``keys`` in one JSON line; ``_Skip`` says why a line is unusable."""
    try:
        record = json.loads(line)
    except ValueError:  # also invalid UTF-8
        raise _Skip("invalid JSON") from None
    if not isinstance(record, dict):
        raise _Skip("not a JSON object")
    texts = []
    for key in keys:
        if key not in record:
            raise _Skip(f"missing key '{key}'")
        text = record[key]
        if not isinstance(text, str):
            raise _Skip(f"non-string '{key}'")
        if not text or text.isspace():
            raise _Skip(f"empty '{key}'")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates such as "\ud800"
            raise _Skip(f"invalid Unicode in '{key}'") from None
        texts.append(text)
    return texts


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One batched tokenizer call: (all tokens concatenated, tokens per document)."""
    ids = _worker["tokenizer"].encode_batch(texts, num_threads=1)  # the pool is the parallelism
    if _worker["eod_id"] is not None:
        for doc in ids:
            doc.append(_worker["eod_id"])
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    # int32 holds any vocabulary; the builder casts to the dataset's dtype as it writes.
    tokens = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
    return tokens, lengths


def _tokenize_chunk(chunk: _Chunk) -> _ChunkResult:
    """Parse and tokenize one chunk (runs in a worker)."""
    keys = _worker["keys"]
    columns: list[list[str]] = [[] for _ in keys]
    bad, blank = [], 0
    for lineno, line in enumerate(chunk.lines, chunk.first_line):
        if line.isspace():
            blank += 1
            continue
        try:
            texts = _extract(line, keys)
        except _Skip as skip:
            bad.append((lineno, str(skip)))
            continue
        for column, text in zip(columns, texts):
            column.append(text)
    tokens, lengths = zip(*map(_encode, columns))
    return _ChunkResult(chunk.file_index, chunk.position, list(tokens), list(lengths), bad, blank)


def _in_order(executor, chunks: Iterable[_Chunk], window: int) -> Iterator[_ChunkResult]:
    """Results of ``_tokenize_chunk`` in input order, with at most ``window`` chunks in flight."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(executor.submit(_tokenize_chunk, chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextmanager
def _worker_pool(workers: int, init: tuple) -> Iterator[ProcessPoolExecutor]:
    """``workers`` tokenizer processes, forked at once: before megatron-core (and torch) is
    imported, so they stay small and start fast. A worker that dies (killed, out of memory)
    is an error, not a hang as with ``multiprocessing.Pool``."""
    executor = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), _init_worker, init)
    try:
        executor.submit(int)  # forks the workers now
        yield executor
    except BrokenProcessPool:
        raise DataError("a tokenizer worker died (killed, or out of memory?); "
                        "no dataset was written") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- writing


def _add_documents(builder, tokens: np.ndarray, lengths: np.ndarray) -> None:
    """Append a chunk of documents (one sequence each) with one write: the same files as
    ``builder.add_document(doc, [len(doc)])`` per document."""
    if not len(lengths):
        return
    first = len(builder.sequence_lengths)
    builder.document_indices.extend(range(first + 1, first + len(lengths)))
    builder.add_document(tokens, lengths.tolist())  # appends the last document's end


def _fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _Outputs:
    """One ``IndexedDatasetBuilder`` per JSON key, writing temporary files until ``commit``."""

    def __init__(self, output_prefix: str, keys: Sequence[str], dtype: type):
        self.prefixes = [dataset_prefix(output_prefix, key) for key in keys]
        self.builders = []
        self.directory = os.path.dirname(output_prefix) or "."
        builder_cls = _indexed_dataset().IndexedDatasetBuilder
        with self._writing():
            os.makedirs(self.directory, exist_ok=True)
            for prefix in self.prefixes:
                self.builders.append(builder_cls(prefix + ".bin" + TMP, dtype=dtype))

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """An ``OSError`` (no permission, disk full) becomes a one-line ``DataError``."""
        try:
            yield
        except OSError as e:
            raise DataError(f"cannot write to output directory {self.directory}: "
                            f"{e.strerror or e}") from None

    def add(self, result: _ChunkResult) -> None:
        with self._writing():
            for builder, tokens, lengths in zip(self.builders, result.tokens, result.lengths):
                _add_documents(builder, tokens, lengths)

    def commit(self, metadata: Sequence[dict]) -> list[str]:
        """Finalize, then move each dataset into place: ``.bin``, ``.json``, ``.idx`` last.

        An existing ``.idx`` is removed first, so no moment shows a new ``.bin`` beside an old
        ``.idx``; the pair looks complete only once the new ``.idx`` arrives.
        """
        with self._writing():
            for prefix, builder in zip(self.prefixes, self.builders):
                builder.finalize(prefix + ".idx" + TMP)
            for prefix, meta in zip(self.prefixes, metadata):
                for ext in (".bin", ".idx"):
                    _fsync(prefix + ext + TMP)
                _remove(prefix + ".idx")
                os.replace(prefix + ".bin" + TMP, prefix + ".bin")
                write_json(prefix + ".json", meta)
                os.replace(prefix + ".idx" + TMP, prefix + ".idx")
        return [prefix + ext for prefix in self.prefixes for ext in (".bin", ".idx", ".json")]

    def discard(self) -> None:
        """Close and delete the temporary files (after an error)."""
        for builder in self.builders:
            builder.data_file.close()
        for prefix in self.prefixes[: len(self.builders)]:
            for ext in (".bin", ".idx"):
                _remove(prefix + ext + TMP)


# ----------------------------------------------------------------------------- progress


class _Progress:
    """docs/s and tokens/s on stderr: a tqdm bar on a terminal when tqdm is installed,
    otherwise a line every ``interval`` seconds (every chunk when ``interval`` <= 0)."""

    def __init__(self, total_bytes: int, interval: float):
        self.total, self.interval = total_bytes, interval
        self.start = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                                desc="preprocess", file=sys.stderr, dynamic_ncols=True)

    def update(self, documents: int, tokens: int, done_bytes: int) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        rates = f"{documents / elapsed:,.0f} docs/s, {tokens / elapsed:,.0f} tokens/s"
        if self.bar is not None:
            self.bar.update(done_bytes - self.bar.n)
            self.bar.set_postfix_str(rates, refresh=False)
        elif now - self.last >= self.interval:
            self.last = now
            share = f"{100 * done_bytes / self.total:.0f}%" if self.total else "?"
            print(f"[preprocess] {documents:,} docs, {tokens:,} tokens, {share} of input, {rates}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- summary


@dataclass
class PreprocessSummary:
    """What a run did; ``format()`` is the closing report."""

    inputs: list[str]
    keys: list[str]
    documents: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)  # reason -> lines
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first locations
    blank_lines: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def add(self, result: _ChunkResult, strict: bool) -> None:
        """Count a chunk; with ``strict`` its first bad line is an error."""
        path = self.inputs[result.file_index]
        if strict and result.bad:
            lineno, reason = result.bad[0]
            raise DataError(f"{where(path, lineno)}: {reason} "
                            "(--strict stops at the first bad line)")
        self.documents += len(result.lengths[0])
        for key, tokens in zip(self.keys, result.tokens):
            self.tokens[key] = self.tokens.get(key, 0) + len(tokens)
        for lineno, reason in result.bad:
            self.skipped[reason] += 1
            shown = self.examples.setdefault(reason, [])
            if len(shown) < EXAMPLES:
                shown.append(where(path, lineno))
        self.blank_lines += result.blank

    def format(self) -> str:
        tokens = sum(self.tokens.values())
        seconds = max(self.seconds, 1e-9)
        lines = [(f"{self.documents:,} documents, {tokens:,} tokens in {self.seconds:.1f} s "
                  f"({self.documents / seconds:,.0f} docs/s, {tokens / seconds:,.0f} tokens/s)")]
        if self.skipped:
            lines.append(f"skipped {sum(self.skipped.values()):,} lines:")
            for reason, count in sorted(self.skipped.items()):
                more = ", ..." if count > len(self.examples[reason]) else ""
                lines.append(f"  {reason}: {count:,} ({', '.join(self.examples[reason])}{more})")
        if self.blank_lines:
            lines.append(f"ignored {self.blank_lines:,} blank lines")
        lines += [f"wrote {path} ({os.path.getsize(path):,} bytes)" for path in self.outputs]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the run


def _check_inputs(paths: Sequence[str], tokenizer_model: str) -> None:
    for path in paths:
        if not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "does not exist"
            raise DataError(f"input file {path} {what}")
    if not os.path.isfile(tokenizer_model):
        raise DataError(f"tokenizer model {tokenizer_model} does not exist")


def _load_tokenizer(model_path: str) -> Tokenizer:
    try:
        return Tokenizer(model_path)
    except (OSError, RuntimeError) as e:
        raise DataError(f"cannot load tokenizer model {model_path}: {e}") from None


def _metadata(summary: PreprocessSummary, key: str, tokenizer: dict, dtype: type,
              append_eod: bool) -> dict:
    """The sidecar: enough to refuse a dataset made with another tokenizer, and to audit it."""
    return {
        "format": METADATA_FORMAT,
        "json_key": key,
        "dtype": np.dtype(dtype).name,
        "append_eod": append_eod,
        "tokenizer": tokenizer,
        "inputs": [{"path": os.path.abspath(path), "bytes": os.path.getsize(path)}
                   for path in summary.inputs],
        "documents": summary.documents,
        "tokens": summary.tokens[key],
        "skipped_lines": dict(sorted(summary.skipped.items())),
        "blank_lines": summary.blank_lines,
        "seconds": round(summary.seconds, 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def preprocess(
    inputs: Sequence[str],
    output_prefix: str,
    tokenizer_model: str,
    *,
    json_keys: Sequence[str] = ("text",),
    append_eod: bool = False,
    workers: int = 1,
    strict: bool = False,
    log_interval: float = 10.0,
    chunk_bytes: int = CHUNK_BYTES,
) -> PreprocessSummary:
    """Tokenize JSON Lines files into ``<output_prefix>_<key>_document.bin/.idx/.json``.

    Bad lines are skipped and counted by reason (``strict``: the first one raises
    ``DataError`` and nothing is written). The output does not depend on ``workers``.
    """
    inputs, output_prefix = list(map(str, inputs)), str(output_prefix)
    tokenizer_model = str(tokenizer_model)
    _check_inputs(inputs, tokenizer_model)
    tokenizer = _load_tokenizer(tokenizer_model)
    if append_eod and tokenizer.eos_id < 0:
        raise DataError(f"--append-eod: tokenizer model {tokenizer_model} has no end-of-text piece")
    identity = {"model": os.path.abspath(tokenizer_model), "sha256": tokenizer.sha256,
                "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.eos_id}
    summary = PreprocessSummary(inputs, list(json_keys), tokens=dict.fromkeys(json_keys, 0))
    offsets = [0, *itertools.accumulate(os.path.getsize(p) for p in inputs)]
    init = (tokenizer_model, list(json_keys), tokenizer.eos_id if append_eod else None)
    with _worker_pool(workers, init) as executor:
        dtype = _indexed_dataset().DType.optimal_dtype(tokenizer.vocab_size)
        outputs = _Outputs(output_prefix, json_keys, dtype)
        start = time.perf_counter()
        progress = _Progress(offsets[-1], log_interval)
        try:
            for result in _in_order(executor, _read_chunks(inputs, chunk_bytes), 2 * workers + 2):
                summary.add(result, strict)
                outputs.add(result)
                progress.update(summary.documents, sum(summary.tokens.values()),
                                offsets[result.file_index] + result.position)
            if not summary.documents:
                bad = sum(summary.skipped.values())
                raise DataError(f"no documents in {', '.join(inputs)} ({bad:,} bad and "
                                f"{summary.blank_lines:,} blank lines); nothing was written")
            summary.seconds = time.perf_counter() - start
            summary.outputs = outputs.commit(
                [_metadata(summary, key, identity, dtype, append_eod) for key in json_keys])
        except BaseException:
            outputs.discard()
            raise
        finally:
            progress.close()
    return summary


# ----------------------------------------------------------------------------- metadata


def read_dataset_metadata(prefix: str) -> dict:
    """The sidecar of the dataset at ``prefix`` (``OUT/name_text_document``, no extension)."""
    path = prefix + ".json"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist: dataset {prefix} was not made by "
                        "tools/preprocess_data.py, so its tokenizer is unknown; "
                        "re-run it") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read dataset metadata {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise DataError(f"{path} is not dataset metadata written by tools/preprocess_data.py")
    return meta


def check_tokenizer(prefix: str, tokenizer_sha256: str) -> dict:
    """The dataset's metadata; ``DataError`` unless it was tokenized with the given tokenizer."""
    meta = read_dataset_metadata(prefix)
    made_with = meta["tokenizer"]
    if made_with["sha256"] != tokenizer_sha256:
        raise DataError(
            f"dataset {prefix} was tokenized with {made_with['model']} (sha256 "
            f"{made_with['sha256'][:12]}..., vocabulary {made_with['vocab_size']:,}), not with "
            f"this run's tokenizer (sha256 {tokenizer_sha256[:12]}...); re-run "
            "tools/preprocess_data.py with the run's tokenizer")
    return meta


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    default_workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    parser = argparse.ArgumentParser(
        prog="tools/preprocess_data.py",
        description="Tokenize JSON Lines into megatron-core indexed datasets. For each --json-keys "
                    "KEY it writes OUTPUT_PREFIX_KEY_document.bin/.idx (Megatron's naming: pass "
                    "OUTPUT_PREFIX_KEY_document as a data path) and a .json sidecar recording the "
                    "tokenizer's SHA-256, the inputs and the counts. Files appear only when the "
                    "run succeeds. Memory stays bounded whatever the input size.")
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="JSON Lines file(s), plain or .gz, one JSON object per line, read in "
                             "order; blank lines are ignored")
    parser.add_argument("--output-prefix", required=True, help="e.g. data/tokens/web")
    parser.add_argument("--tokenizer-model", required=True, help="SentencePiece .model file")
    parser.add_argument("--json-keys", nargs="+", default=["text"], metavar="KEY",
                        help="JSON keys to tokenize, one dataset each (default: text); a line "
                             "missing any of them is skipped")
    parser.add_argument("--append-eod", action="store_true",
                        help="end every document with the tokenizer's end-of-text id")
    parser.add_argument("--workers", type=int, default=default_workers, metavar="N",
                        help="tokenizer processes (default: cores - 1, at most 8, here "
                             f"{default_workers}). One more process reads and writes. "
                             "Tokenization is the bottleneck, so throughput grows with workers "
                             "up to the cores available; the output is byte-identical for any "
                             "value")
    parser.add_argument("--strict", action="store_true",
                        help="fail at the first bad line (invalid JSON, missing key, non-string "
                             "or empty text) instead of skipping and counting it")
    parser.add_argument("--log-interval", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between progress lines when stderr is not a terminal "
                             "(a terminal with tqdm installed gets a progress bar) (default: 10)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    if len(set(args.json_keys)) != len(args.json_keys):
        parser.error(f"--json-keys has duplicates: {' '.join(args.json_keys)}")
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on ^C
    try:
        summary = run_cli(preprocess, args.input, args.output_prefix, args.tokenizer_model,
                          json_keys=args.json_keys, append_eod=args.append_eod,
                          workers=args.workers, strict=args.strict, log_interval=args.log_interval)
    except KeyboardInterrupt:
        print("error: interrupted; no dataset was written", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.format())


if __name__ == "__main__":
    main()
