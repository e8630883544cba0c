"""Folders that appear whole or not at all, and a single-process megatron runtime."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

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
def atomic_directory(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """A temporary folder beside ``path`` that is renamed to ``path`` only if the block succeeds."""
    path = check_new_output(path, what)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                with open(Path(folder) / name, "rb") as f:
                    os.fsync(f.fileno())
                os.chmod(Path(folder) / name, 0o666 & ~_umask())
        tmp.chmod(0o777 & ~_umask())
        if path.exists():
            path.rmdir()
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def single_process_runtime(seed: int) -> Iterator[None]:
    """megatron's parallel state at TP1/PP1 in this one process (gloo world 1 on CPU).

    An already initialised world-size-1, TP1/PP1 runtime (a test session's) is reused and
    left as it was; otherwise one is started here and torn down afterwards.
    """
    from megatron.core import parallel_state

    from xm2_megatron.runtime import init_runtime, shutdown_runtime

    if torch.distributed.is_initialized():
        layout = (torch.distributed.get_world_size(),
                  parallel_state.get_tensor_model_parallel_world_size(),
                  parallel_state.get_pipeline_model_parallel_world_size())
        if layout != (1, 1, 1):
            raise ConversionError(f"conversion runs in one process; this one is part of a world of "
                                  f"{layout[0]} (TP {layout[1]}, PP {layout[2]}): run it without torchrun")
        yield
        return
    init_runtime(1, 1, seed=seed, environ={})
    try:
        yield
    finally:
        shutdown_runtime()
