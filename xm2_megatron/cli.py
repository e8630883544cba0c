"""Shared command-line plumbing: user errors (and a full device) become one ``error: ...``
line and exit 2."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from xm2_megatron.errors import UserError

T = TypeVar("T")
EXIT_USER_ERROR = 2


def run_cli(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; on a :class:`UserError`, a missing file or a full device print one
    ``error: ...`` line to stderr and exit 2."""
    try:
        return fn(*args, **kwargs)
    except (UserError, FileNotFoundError) as e:
        _exit_with(str(e))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _exit_with(f"no space left on device writing {e.filename or 'a file'}")


def _exit_with(message: str):
    print("error: " + " ".join(message.splitlines()), file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR) from None
