"""The checkpoint folder layout: step folder names, the ``latest`` marker, finding the
checkpoint to load, and the config saved with it.

::

    <dir>/latest                    the name of the newest complete step folder
    <dir>/iter_0000300/             megatron dist checkpoint (metadata.json, common.pt, shards)
    <dir>/iter_0000300/rng.pt       every rank's RNG states (tensors only)
    <dir>/iter_0000300/config.yaml  the resolved config

Anything starting with ``.`` (a save or deletion in progress or killed) is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

LATEST = "latest"
RNG_FILE = "rng.pt"
CONFIG_FILE = "config.yaml"
COMMON_FILE = "common.pt"  # megatron's COMMON_STATE_FNAME
METADATA_FILE = "metadata.json"
_STEP_DIR = re.compile(r"^iter_(\d{7,})$")


def step_dir_name(step: int) -> str:
    """The folder name of the checkpoint of ``step``: ``iter_0000300``."""
    return f"iter_{step:07d}"


def step_of(path: str | Path) -> int | None:
    """The step of a step folder's name, None for any other name."""
    match = _STEP_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | Path) -> bool:
    """A step folder that a finished save renamed into place."""
    path = Path(path)
    return step_of(path) is not None and all(
        (path / name).is_file() for name in (METADATA_FILE, COMMON_FILE, RNG_FILE))


def complete_checkpoints(directory: str | Path) -> list[Path]:
    """The complete step folders in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if is_complete(p)), key=step_of)


def _marked_checkpoint(directory: Path) -> Path | None:
    try:
        name = (directory / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if step_of(name) is None or not is_complete(directory / name):
        return None
    return directory / name


def find_checkpoint(path: str | Path) -> Path | None:
    """The step folder to load: ``path`` itself if it is one, else the folder named by
    ``path/latest``, else (marker missing, unreadable or stale) the newest complete folder;
    None when there is none."""
    path = Path(path)
    if is_complete(path):
        return path
    return _marked_checkpoint(path) or next(reversed(complete_checkpoints(path)), None)


def read_checkpoint_config(step_dir: str | Path) -> dict:
    """The resolved config a checkpoint was saved with (plain dicts)."""
    return yaml.safe_load((Path(step_dir) / CONFIG_FILE).read_text())
