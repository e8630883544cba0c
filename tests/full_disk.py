"""Running a command with a small, nearly full filesystem mounted on a folder.

The tmpfs is mounted in a private mount namespace of the command (``unshare --user
--map-root-user --mount``): nothing outside sees it, and it is gone when the command ends.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = """
size=$1; folder=$2; listing=$3; shift 3
mount -t tmpfs -o size="$size" xm2-full-disk "$folder" || exit 99
"$@"; rc=$?
ls -A "$folder" > "$listing"
exit $rc
"""


def namespaces_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True, check=False).returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_available(), reason="needs unprivileged user and mount namespaces (unshare)")


def run_on_full_disk(folder: Path, size: str, argv: list[str], timeout: int = 300,
                     **kwargs) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``argv`` with a ``size`` tmpfs on ``folder``; returns the result and the names
    (hidden ones too) left in ``folder`` when the command ended."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder.parent / f"{folder.name}.left.txt"
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, "sh", size,
         str(folder), str(listing), *map(str, argv)],
        capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    assert result.returncode != 99, f"could not mount a tmpfs on {folder}: {result.stderr}"
    left = listing.read_text().split() if listing.exists() else []
    return result, left


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]
