"""Outputs that appear whole or not at all: write under a temporary name beside the
destination, fsync, then rename into place.

Used by checkpoints, preprocessing, the jsonl tools and the Hugging Face export, so a
crash or ``kill -9`` at any point leaves either the previous output or the new one, never
a partial file under the final name. Temporary names are unique per call (two runs on one
destination never write the same temporary file) and start with ``.`` so listings and
globs skip them. A write that fails because the device is full becomes one
``DiskFullError`` naming the folder (``disk_full_reported``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from xm2_megatron.errors import DiskFullError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# what libraries that drop the errno say (torch's zip writer reports a short write as a position)
DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os error 28", "unexpected pos")
MIN_FREE_BYTES = 1 << 20  # less than this left on the folder's device counts as full


def umask() -> int:
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike) -> None:
    """fsync one file or folder (a folder's fsync makes a rename inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and folder under ``root``."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(folder)


def temporary_name(path: str | os.PathLike, tag: str = "") -> Path:
    """A unique hidden name beside ``path``: ``.<name>.<tag><random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}{uuid.uuid4().hex[:12]}.tmp")


def _usual_mode(path: Path, directory: bool) -> None:
    """The mode a plain ``open``/``mkdir`` would have given (``mkstemp`` makes 0600/0700)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make the fully written file ``tmp`` the file ``path`` (fsync, rename, fsync the folder)."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


def commit_directory(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make the fully written folder ``tmp`` the folder ``path``; an existing ``path`` is
    first renamed aside and then removed, so no partial folder ever has the final name."""
    tmp, path = Path(tmp), Path(path)
    fsync_tree(tmp)
    if path.exists():
        remove_tree(path)
    os.rename(tmp, path)
    fsync_path(path.parent)


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a folder without ever leaving a partial one under its name."""
    path = Path(path)
    doomed = temporary_name(path, "delete.")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def disk_full(error: BaseException, directory: str | os.PathLike) -> bool:
    """Whether ``error`` (or one it was raised from) comes from a full device: its errno, a
    library's message saying so, or less than ``MIN_FREE_BYTES`` left where it wrote."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(seen) for text in DISK_FULL_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(directory).free < MIN_FREE_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def disk_full_reported(directory: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a failure of the block caused by a full device into one ``DiskFullError``:
    ``no space left on device in <directory>: <what>`` (the outermost such block names it)."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as error:  # torch's CheckpointException is a BaseException
        if not (isinstance(error, DiskFullError) or disk_full(error, directory)):
            raise
        raise DiskFullError(f"no space left on device in {directory}: {what}") from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """``with atomic_file(p) as f: f.write(...)``: ``p`` appears only if the block succeeds
    (a full device: ``DiskFullError``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with disk_full_reported(path.parent, f"{path.name} was not written"), _removed_on_error(tmp):
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
        _usual_mode(Path(tmp), directory=False)
        commit_file(tmp, path)


@contextlib.contextmanager
def _removed_on_error(tmp: str | os.PathLike) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if Path(tmp).is_dir():
            remove_tree(tmp)
        else:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path`` that becomes ``path`` only if the block succeeds
    (an existing empty ``path`` is replaced; a full device: ``DiskFullError``)."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    with disk_full_reported(path.parent, f"{path.name} was not written"), _removed_on_error(tmp):
        yield tmp
        for folder, dirs, files in os.walk(tmp):
            for name in files:
                _usual_mode(Path(folder) / name, directory=False)
            for name in dirs:
                _usual_mode(Path(folder) / name, directory=True)
        _usual_mode(tmp, directory=True)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        commit_directory(tmp, path)
