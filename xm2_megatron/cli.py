"""Shared command-line plumbing: user errors become one ``error: ...`` line and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from xm2_megatron.errors import UserError

T = TypeVar("T")
EXIT_USER_ERROR = 2


def run_cli(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; on a :class:`UserError` (or a missing file) print one ``error: ...`` line
    to stderr and exit 2."""
    try:
        return fn(*args, **kwargs)
    except (UserError, FileNotFoundError) as e:
        print("error: " + " ".join(str(e).splitlines()), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
