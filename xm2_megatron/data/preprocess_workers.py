"""The tokenizer worker pool of ``preprocess``: parses and tokenizes whole chunks in order.

Each worker makes one batched SentencePiece call per chunk and returns numpy token arrays;
results come back in input order with a bounded number of chunks in flight.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import orjson

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


def _init_worker(model_path: str, keys: Sequence[str], eod_id: int | None, dtype: type) -> None:
    _worker.update(tokenizer=Tokenizer(model_path), keys=keys, eod_id=eod_id, dtype=dtype)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the CLI's cleanup handler is not ours
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the main process is gone (after SIGKILL it cannot say so)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _parse(line: bytes):
    """The line's JSON value. orjson parses about twice as fast; what it rejects (invalid
    JSON, but also NaN, integers beyond 64 bits, lone surrogates) goes to the stdlib parser,
    so every line is judged as ``json.loads`` judges it."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def _extract(line: bytes, keys: Sequence[str]) -> list[str]:
    """The texts under ``keys`` in one JSON line; ``_Skip`` says why a line is unusable."""
    try:
        record = _parse(line)
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
    lengths = np.fromiter(map(len, ids), np.int32, len(ids))
    # already the dataset's dtype: the main process writes the bytes as they come
    tokens = np.fromiter(itertools.chain.from_iterable(ids), _worker["dtype"], int(lengths.sum()))
    return tokens, lengths


def _tokenize_chunk(chunk: Chunk) -> ChunkResult:
    """Parse and tokenize one chunk (runs in a worker)."""
    keys = _worker["keys"]
    columns: list[list[str]] = [[] for _ in keys]
    bad, blank = [], 0
    for lineno, line in enumerate(chunk.lines(), chunk.first_line):
        if not line or line.isspace():
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


class TokenizerPool:
    """``workers`` forked tokenizer processes; chunk ``i`` goes to worker ``i % workers``
    through that worker's task queue and comes back on that worker's own result pipe.

    Not ``ProcessPoolExecutor``: its workers share one result pipe, and a worker killed while
    writing a result leaves a partial message there and the pipe's lock held, so the
    executor waits forever (about one kill in 25 did). Here only the worker holds the write
    end of its pipe, so its death reads as end of file: an error, never a hang.
    """

    def __init__(self, workers: int, model_path: str, keys: Sequence[str], eod_id: int | None,
                 dtype: type):
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe(duplex=False) for _ in range(workers)]
        self._tasks = [context.Queue() for _ in range(workers)]
        for queue in self._tasks:
            queue.cancel_join_thread()  # a dead worker's unread tasks must not block exit
        self._results = [reader for reader, _ in pipes]
        ends = [end for pipe in pipes for end in pipe]
        self._processes = [
            context.Process(target=_serve, daemon=True,
                            args=(tasks, writer, [end for end in ends if end is not writer],
                                  model_path, list(keys), eod_id, dtype))
            for tasks, (_, writer) in zip(self._tasks, pipes)]
        for process in self._processes:
            process.start()
        for _, writer in pipes:
            writer.close()

    def in_order(self, chunks: Iterable[Chunk], window: int) -> Iterator[ChunkResult]:
        """Results of ``_tokenize_chunk`` in input order, with at most ``window`` chunks in
        flight (the input is not read ahead of slow workers). Every finished result is read
        at once, in whatever order the workers finish, so that no worker waits to hand one
        over while the main process waits for another."""
        sent = received = 0
        ready: dict[int, ChunkResult] = {}
        for chunk in chunks:
            self._tasks[sent % len(self._tasks)].put(chunk)
            sent += 1
            self._collect(ready, received, sent, block=False)
            if sent - received >= window:
                yield self._next(ready, received, sent)
                received += 1
        while received < sent:
            yield self._next(ready, received, sent)
            received += 1

    def _next(self, ready: dict[int, ChunkResult], index: int, sent: int) -> ChunkResult:
        """Result ``index``, collecting others as they finish while it is awaited."""
        while index not in ready:
            self._collect(ready, index, sent, block=True)
        return ready.pop(index)

    def _collect(self, ready: dict[int, ChunkResult], received: int, sent: int,
                 block: bool) -> None:
        """Read every finished result (waiting for one at least when ``block``). Worker ``w``
        returns chunks ``w``, ``w + workers``, ... in order, so the next result on each pipe
        is the first of its chunks not read yet."""
        workers = len(self._results)
        pending = {}  # pipe -> the index of the result it delivers next
        for index in range(received, sent):
            pipe = self._results[index % workers]
            if index not in ready and pipe not in pending:
                pending[pipe] = index
        if not pending:
            return
        for pipe in multiprocessing.connection.wait(list(pending), timeout=None if block else 0):
            ready[pending[pipe]] = self._receive(pipe)

    def _receive(self, connection) -> ChunkResult:
        try:
            result = connection.recv()
        except (EOFError, OSError):
            raise DataError("a tokenizer worker died (killed, or out of memory?); "
                            "no dataset was written") from None
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self, finished: bool) -> None:
        """Stop the workers: after their last task when ``finished``, else at once."""
        for queue, process in zip(self._tasks, self._processes):
            if finished:
                queue.put(None)
            else:
                process.kill()  # it may be blocked writing a result no one will read
        for process in self._processes:
            process.join()
        for queue, reader in zip(self._tasks, self._results):
            queue.close()
            reader.close()


def _serve(tasks, results, foreign, model_path: str, keys: list[str], eod_id: int | None,
           dtype: type) -> None:
    """A worker's loop: tokenize each chunk from ``tasks`` and send it back on ``results``."""
    for connection in foreign:  # other workers' pipe ends: their death must read as EOF
        connection.close()
    _init_worker(model_path, keys, eod_id, dtype)
    while (chunk := tasks.get()) is not None:
        try:
            result = _tokenize_chunk(chunk)
        except Exception as error:  # the main process raises it
            result = error
        results.send(result)


@contextmanager
def worker_pool(workers: int, model_path: str, keys: Sequence[str], eod_id: int | None,
                dtype: type) -> Iterator[TokenizerPool]:
    """``workers`` tokenizer processes writing tokens as ``dtype``, forked at once."""
    pool = TokenizerPool(workers, model_path, keys, eod_id, dtype)
    finished = False
    try:
        yield pool
        finished = True
    finally:
        pool.close(finished)
