"""The tokenizer worker pool of ``preprocess``: parses and tokenizes whole chunks in order.

Each worker makes one batched SentencePiece call per chunk and returns numpy token arrays;
results come back in input order with a bounded number of chunks in flight.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess_input import Chunk
from xm2_megatron.data.tokenizer import Tokenizer


class _Skip(Exception):
    """A line that is not a document; the message is the reason."""


class ChunkResult(NamedTuple):
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


def _tokenize_chunk(chunk: Chunk) -> ChunkResult:
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
    return ChunkResult(chunk.file_index, chunk.position, list(tokens), list(lengths), bad, blank)


def in_order(executor, chunks: Iterable[Chunk], window: int) -> Iterator[ChunkResult]:
    """Results of ``_tokenize_chunk`` in input order, with at most ``window`` chunks in flight
    (``Pool.imap`` would read the whole input ahead of slow workers)."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(executor.submit(_tokenize_chunk, chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextmanager
def worker_pool(workers: int, model_path: str, keys: Sequence[str],
                eod_id: int | None) -> Iterator[ProcessPoolExecutor]:
    """``workers`` tokenizer processes, forked at once: before megatron-core (and torch) is
    imported, so they stay small and start fast. A worker that dies (killed, out of memory)
    is an error, not a hang as with ``multiprocessing.Pool``."""
    executor = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), _init_worker,
                                   (model_path, list(keys), eod_id))
    try:
        executor.submit(int)  # forks the workers now
        yield executor
    except BrokenProcessPool:
        raise DataError("a tokenizer worker died (killed, or out of memory?); "
                        "no dataset was written") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
