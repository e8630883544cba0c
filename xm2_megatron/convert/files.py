"""Output folders of the conversion tools: new, and written atomically."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from xm2_megatron import atomic
from xm2_megatron.convert.errors import ConversionError


def check_new_output(path: str | os.PathLike, what: str) -> Path:
    """``path`` must not exist (or be an empty folder) and its parent must exist."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConversionError(f"{what} {path} already exists and is not empty: choose a new folder")
    if not path.parent.is_dir():
        raise ConversionError(f"the folder {path.parent} for {what} {path} does not exist")
    return path


@contextlib.contextmanager
def new_output_directory(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """A temporary folder that becomes the new folder ``path`` only if the block succeeds."""
    with atomic.atomic_directory(check_new_output(path, what)) as tmp:
        yield tmp
