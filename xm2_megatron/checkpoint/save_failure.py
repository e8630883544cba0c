"""A checkpoint save that fails (a full device, a folder that cannot be written) is one error
on every rank: the ranks agree that it failed, rank 0 removes the partial temporary folder,
and the message names the folder and the checkpoint that is kept."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from xm2_megatron import atomic
from xm2_megatron.checkpoint.format import find_checkpoint
from xm2_megatron.errors import CheckpointError, DiskFullError, describe
from xm2_megatron.runtime import broadcast_from_rank0

_TEMPORARY_STEP = re.compile(r"^\.iter_(\d+)\..*\.tmp$")
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def remove_leftovers(directory: Path) -> list[int]:
    """Delete temporary folders and files of saves or deletions that failed or were killed;
    returns the steps of the saves among them."""
    steps = []
    for path in directory.glob(".*.tmp"):
        match = _TEMPORARY_STEP.match(path.name)
        if match:
            steps.append(int(match.group(1)))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return sorted(steps)


@contextlib.contextmanager
def failure_agreed(directory: Path) -> Iterator[None]:
    """Run a part of a save on every rank (a collective call at its end): if it failed on any
    rank, every rank raises the same ``DiskFullError`` or ``CheckpointError`` after rank 0
    removed what the save had written."""
    error: BaseException | None = None
    try:
        yield
    except _FATAL:
        raise
    except BaseException as e:  # torch's CheckpointException is a BaseException
        if getattr(e, "agreed", False):  # an inner block already failed on every rank
            raise
        error = e
    mine = None if error is None else (atomic.disk_full(error, directory), describe(error))
    reports = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(reports, mine)
    failures = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if not failures:
        return
    step = None
    if torch.distributed.get_rank() == 0:
        step = next(reversed(remove_leftovers(directory)), None)
    failure = save_failed(directory, broadcast_from_rank0(step), failures)
    failure.agreed = True
    raise failure from None


def save_failed(directory: Path, step: int | None,
                failures: list[tuple[int, tuple[bool, str]]]) -> CheckpointError:
    """The one-line error of a failed save of ``step`` (None: not known)."""
    which = "the checkpoint" if step is None else f"the checkpoint of step {step}"
    kept = find_checkpoint(directory)
    kept_text = f"{kept} is kept" if kept else "no earlier checkpoint exists there"
    if any(full for _, (full, _) in failures):
        return DiskFullError(
            f"no space left on device in {directory}: {which} was not saved (its partial files "
            f"are removed); {kept_text}. Free space there or set checkpoint.dir elsewhere, then "
            "run again to resume")
    rank, (_, description) = failures[0]
    return CheckpointError(f"saving {which} into {directory} failed on rank {rank} "
                           f"({description}); {kept_text}")
