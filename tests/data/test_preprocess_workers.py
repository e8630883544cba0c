"""The tokenizer pool's failure path: a worker that dies mid-result is an error, not a hang."""

from __future__ import annotations

import os
import signal
import threading
import json
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
    yield Chunk(0, 1, 10, b'{"text": "a"}\n')
    time.sleep(2)  # the workers are killed mid-send meanwhile
    yield Chunk(0, 2, 20, b'{"text": "b"}\n')


def test_worker_killed_while_sending_its_result_is_an_error(monkeypatch):
    monkeypatch.setattr(workers, "_init_worker", lambda *args: None)
    monkeypatch.setattr(workers, "_tokenize_chunk", _die_while_sending)
    with pytest.raises(DataError, match="a tokenizer worker died"):
        with workers.worker_pool(2, "unused.model", ["text"], None, np.uint16) as pool:
            for _ in pool.in_order(_slow_chunks(), window=4):
                pass


def test_worker_exception_reaches_the_main_process(monkeypatch):
    def fail(chunk):
        raise ValueError(f"chunk at line {chunk.first_line}")

    monkeypatch.setattr(workers, "_init_worker", lambda *args: None)
    monkeypatch.setattr(workers, "_tokenize_chunk", fail)
    with pytest.raises(ValueError, match="chunk at line 1"):
        with workers.worker_pool(2, "unused.model", ["text"], None, np.uint16) as pool:
            list(pool.in_order(_slow_chunks(), window=1))


LINES = [
    b'{"text": "plain"}', b'{"text": "a", "text": "b"}', b'{"text": NaN}', b'{"text": 1e400}',
    b'{"text": 123456789012345678901234567890}', b'{"text": "\\ud800"}',
    b'{"text": "\\ud83e\\udd16"}', b'{"text": "\xed\xa0\x80"}', b'{"text": "\xff"}',
    b'{"text": "\\u4e2d\xe6\x96\x87"}', b'[1, 2]', b'{"text": "unterminated',
    b'  {"text": "spaces"}  ', b'{"text": ""}', b'{"body": "x"}', b'{"text": ["a"]}',
]


def _outcome(line: bytes):
    try:
        return workers._extract(line, ["text"])
    except workers._Skip as skip:
        return f"skip: {skip}"


@pytest.mark.parametrize("line", LINES)
def test_every_line_is_judged_as_with_json_loads(line, monkeypatch):
    """orjson parses first; what it rejects or reads differently never changes a line's fate."""
    fast = _outcome(line)
    monkeypatch.setattr(workers, "_parse", json.loads)
    assert fast == _outcome(line)
