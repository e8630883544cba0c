"""Processes that must not outlive their parent, however it dies (Linux ``PR_SET_PDEATHSIG``;
elsewhere this does nothing):

- processes forked inside ``children_die_with_this_process()``: megatron's forked async
  checkpoint writers never outlive a trainer killed with SIGKILL;
- ``exit_with_launcher()``: a rank started by ``torchrun`` is killed when ``torchrun`` dies
  (torch elastic starts ranks in their own sessions, so a SIGKILLed launcher would leave
  them running, waiting on each other forever).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterator, Mapping

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


def exit_with_launcher(environ: Mapping[str, str] = os.environ) -> None:
    """Under ``torchrun`` (``TORCHELASTIC_RUN_ID`` set), have the kernel kill this process when
    its launcher dies; exit at once if it has died already."""
    if _libc is None or "TORCHELASTIC_RUN_ID" not in environ:
        return
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(1)


def _register() -> None:
    parent = os.getpid()

    def before() -> None:
        nonlocal parent
        parent = os.getpid()

    os.register_at_fork(before=before, after_in_child=lambda: _after_fork_in_child(parent))


_register()
