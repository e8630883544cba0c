"""Processes forked inside ``children_die_with_this_process()`` are killed by the kernel when
this process dies (Linux ``PR_SET_PDEATHSIG``), however it dies: megatron's forked async
checkpoint writers never outlive a trainer killed with SIGKILL. Elsewhere this does nothing."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1
_active = False
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def _after_fork_in_child(parent: int) -> None:
    if _active and _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died between the fork and the prctl
            os._exit(1)


@contextlib.contextmanager
def children_die_with_this_process() -> Iterator[None]:
    """While active, every ``os.fork()`` child of this process (on Linux) dies with it."""
    global _active
    previous, _active = _active, True
    try:
        yield
    finally:
        _active = previous


def _register() -> None:
    parent = os.getpid()

    def before() -> None:
        nonlocal parent
        parent = os.getpid()

    os.register_at_fork(before=before, after_in_child=lambda: _after_fork_in_child(parent))


_register()
