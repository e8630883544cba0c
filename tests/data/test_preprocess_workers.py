"""The tokenizer pool's failure path: a worker that dies mid-result is an error, not a hang."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from xm2_megatron.data import preprocess_workers as workers
from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess_input import Chunk

TOKENS = 4_000_000  # a 16 MB result: far more than a pipe holds, so its send blocks midway


def _die_while_sending(chunk: Chunk) -> workers.ChunkResult:
    """Return a result too large for the pipe, and SIGKILL this worker 0.5 s later: while its
    send waits for a main process that is not reading yet."""
    killer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL))
    killer.start()
    lengths = np.array([TOKENS], np.int64)
    return workers.ChunkResult(chunk.file_index, chunk.position,
                               [np.zeros(TOKENS, np.int32)], [lengths], [], 0)


def _slow_chunks():
    yield Chunk(0, 1, 10, [b'{"text": "a"}\n'])
    time.sleep(2)  # the workers are killed mid-send meanwhile
    yield Chunk(0, 2, 20, [b'{"text": "b"}\n'])


def test_worker_killed_while_sending_its_result_is_an_error(monkeypatch):
    monkeypatch.setattr(workers, "_init_worker", lambda *args: None)
    monkeypatch.setattr(workers, "_tokenize_chunk", _die_while_sending)
    with pytest.raises(DataError, match="a tokenizer worker died"):
        with workers.worker_pool(2, "unused.model", ["text"], None) as pool:
            for _ in pool.in_order(_slow_chunks(), window=4):
                pass


def test_worker_exception_reaches_the_main_process(monkeypatch):
    def fail(chunk):
        raise ValueError(f"chunk at line {chunk.first_line}")

    monkeypatch.setattr(workers, "_init_worker", lambda *args: None)
    monkeypatch.setattr(workers, "_tokenize_chunk", fail)
    with pytest.raises(ValueError, match="chunk at line 1"):
        with workers.worker_pool(2, "unused.model", ["text"], None) as pool:
            list(pool.in_order(_slow_chunks(), window=1))
