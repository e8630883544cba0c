"""One run per checkpoint directory: rank 0 holds a POSIX lock on ``<dir>/.lock`` for the
whole run, so a second run on the same directory (whose saves would delete the first one's
temporary folders) is refused with one line naming the holder.

POSIX (``lockf``) locks belong to the process: the kernel drops them when it dies, however it
dies, and forked children (megatron's async-save writers) do not inherit them, so a requeued
or resumed run is never locked out by what a killed one left behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path

import torch

from xm2_megatron.errors import CheckpointError
from xm2_megatron.runtime import broadcast_from_rank0

LOCK_FILE = ".lock"
logger = logging.getLogger(__name__)


class DirectoryLock:
    """The lock of one checkpoint directory, held by this process from ``acquire`` to ``release``."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise CheckpointError(
                    f"{self.path.parent} is in use by another run ({holder}): give this run its "
                    "own checkpoint.dir, or stop the other one") from None
            logger.warning("%s: this file system does not lock (%s); nothing stops a second run "
                           "on this checkpoint directory", self.path, e.strerror)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the POSIX lock
            self._fd = None


def lock_directory(directory: str | Path) -> DirectoryLock | None:
    """Rank 0 locks ``directory``; every rank raises the same ``CheckpointError`` when another
    run holds it (a collective call). Returns rank 0's lock (None elsewhere)."""
    lock, error = None, None
    if torch.distributed.get_rank() == 0:
        lock = DirectoryLock(directory)
        try:
            lock.acquire()
        except CheckpointError as e:
            lock, error = None, str(e)
    error = broadcast_from_rank0(error)
    if error is not None:
        raise CheckpointError(error)
    return lock
