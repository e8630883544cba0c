"""Run a worker script under torchrun (gloo, CPU) or as a plain process, failing loudly."""

import os
import subprocess
import sys
import time
from pathlib import Path


def run_worker(script: Path, args: list[str], nproc: int = 1, timeout: int = 300) -> None:
    """Run ``script`` with ``nproc`` processes; raise with its output if it fails."""
    if nproc == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *args,
        ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    """Poll ``condition()`` until true; fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"process exited {process.returncode}: {process.stderr.read()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the process")
        time.sleep(0.2)
