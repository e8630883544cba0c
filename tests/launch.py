"""Launching the trainer and the test workers in fresh processes: one process, or ``nproc``
under ``torch.distributed.run --standalone`` (gloo on CPU).

``run_trainer`` / ``run_worker`` wait for the process (with a timeout) and return its
CompletedProcess; ``start_trainer`` / ``start_worker`` return the Popen for the tests that kill
or signal it, with ``wait_for`` to wait until it has got far enough.

The launched process gets this process's environment, read at launch (so variables set with
``monkeypatch`` count), with ``env`` on top: by default ``DEFAULT_ENV``; ``env={}`` passes the
environment as it is. It runs in the repository's root, so relative recipe paths work.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: one thread per process (several share the machine's cores), and no warnings in the output
DEFAULT_ENV = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def python_command(target: Sequence[str], nproc: int = 1) -> list[str]:
    """``python TARGET...`` (a script and its arguments, or ``-m module ...``), under
    ``torch.distributed.run --standalone --nproc_per_node=NPROC`` when ``nproc > 1``."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, *map(str, target)]


def trainer_command(recipe, *overrides: str, nproc: int = 1) -> list[str]:
    """``python -m xm2_megatron.train RECIPE OVERRIDES...``, alone or under torchrun."""
    return python_command(["-m", "xm2_megatron.train", recipe, *overrides], nproc)


def worker_command(script, args: Sequence[str] = (), nproc: int = 1) -> list[str]:
    """``python SCRIPT ARGS...``, alone or under torchrun."""
    return python_command([script, *args], nproc)


def launch_env(env: Mapping[str, str] = DEFAULT_ENV) -> dict[str, str]:
    """This process's environment now, with ``env`` set on top."""
    return {**os.environ, **env}


def run(cmd: list[str], *, timeout: float = 300, env: Mapping[str, str] = DEFAULT_ENV,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd`` (output captured as text); with ``check``, a non-zero exit raises
    AssertionError with the command and the tail of its stdout and stderr."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=launch_env(env), cwd=REPO, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def start(cmd: list[str], *, env: Mapping[str, str] = DEFAULT_ENV, **popen) -> subprocess.Popen:
    """Start ``cmd`` (text mode); ``popen`` goes to Popen (stdout, stderr, start_new_session)."""
    return subprocess.Popen(cmd, text=True, env=launch_env(env), cwd=REPO, **popen)


def run_trainer(recipe, *overrides: str, nproc: int = 1, timeout: float = 300,
                env: Mapping[str, str] = DEFAULT_ENV,
                check: bool = False) -> subprocess.CompletedProcess:
    """Train ``recipe`` with ``overrides`` in ``nproc`` processes and wait for it."""
    return run(trainer_command(recipe, *overrides, nproc=nproc), timeout=timeout, env=env,
               check=check)


def start_trainer(recipe, *overrides: str, nproc: int = 1, env: Mapping[str, str] = DEFAULT_ENV,
                  **popen) -> subprocess.Popen:
    """Start training ``recipe`` with ``overrides``; the caller waits for, kills or signals it."""
    return start(trainer_command(recipe, *overrides, nproc=nproc), env=env, **popen)


def run_worker(script, args: Sequence[str] = (), nproc: int = 1, timeout: float = 300,
               env: Mapping[str, str] = DEFAULT_ENV) -> subprocess.CompletedProcess:
    """Run ``script`` with ``nproc`` processes; raise with its output if it fails."""
    return run(worker_command(script, args, nproc), timeout=timeout, env=env, check=True)


def start_worker(script, args: Sequence[str] = (), nproc: int = 1,
                 env: Mapping[str, str] = DEFAULT_ENV, **popen) -> subprocess.Popen:
    """Start ``script`` with ``nproc`` processes; the caller waits for, kills or signals it."""
    return start(worker_command(script, args, nproc), env=env, **popen)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen,
             timeout: float = 240) -> None:
    """Poll ``condition()`` until true; fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            stderr = process.stderr.read()[-4000:] if process.stderr else ""
            raise AssertionError(f"process exited {process.returncode}: {stderr}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the process")
        time.sleep(0.2)
