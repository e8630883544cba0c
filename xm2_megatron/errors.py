"""The project's error root: bad input that a user can fix.

Every error caused by input (a recipe field, a data file, a checkpoint, a Hugging Face
folder) derives from :class:`UserError`; its message is one line naming the file or field
and what was expected. Command lines print it as ``error: ...`` and exit 2
(:func:`xm2_megatron.cli.run_cli`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: one line naming the file, line or field and what was expected."""


class CheckpointError(UserError):
    """A checkpoint that cannot be found, read or loaded into this model."""


class DiskFullError(UserError):
    """No space left on the device (or the quota) that an output was being written to; its
    partial files are removed and what was there before is kept."""


def describe(error: BaseException) -> str:
    """An exception in one line of at most 300 characters: for torch's multi-rank tracebacks
    their last line (e.g. ``FileNotFoundError: ... __0_1.distcp``), else the type and message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if "Traceback" in str(error) and ":" in last:
        return last[:300]
    return f"{type(error).__name__}: {' '.join(lines)}"[:300]
