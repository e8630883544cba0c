"""Submitting the project's Slurm scripts to the test cluster and watching their jobs."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.launch import REPO
from tests.wandb_offline import WANDB_ENV

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE"}


def submit_script(slurm, script: str, out: Path, name: str, args=(), sbatch=(), **env) -> str:
    """sbatch ``script`` from the repository (the submit dir), its log and run folder in
    ``out``, W&B kept offline and inside ``out``; the job id."""
    out.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in slurm.env.items() if k not in WANDB_ENV}
    environ.update(XM2_PYTHON=sys.executable, XM2_RUN_DIR=str(out / "run"),
                   NETRC=str(out / "no-netrc"), PYTHONWARNINGS="ignore")
    for folder in ("CONFIG", "CACHE", "DATA"):
        environ[f"WANDB_{folder}_DIR"] = str(out / f"wandb-{folder.lower()}")
    environ.update(env)
    result = subprocess.run(
        [*slurm.client, "sbatch", "--parsable", f"--job-name={name}", f"--output={out}/%x-%j.out", *sbatch,
         script, *args], cwd=REPO, env=environ, capture_output=True, text=True,
        check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_info(slurm, job_id: str) -> dict[str, str]:
    result = subprocess.run([*slurm.client, "scontrol", "show", "job", "-o", job_id], env=slurm.env,
                            capture_output=True, text=True, check=True)
    return dict(re.findall(r"(\w+)=(\S*)", result.stdout))


def wait_job(slurm, job_id: str, until=None, timeout: float = 240) -> tuple[dict, list[str]]:
    """Poll until the job ends (or ``until()`` holds); its last info and the states seen."""
    states, deadline = [], time.monotonic() + timeout
    while True:
        info = job_info(slurm, job_id)
        if not states or states[-1] != info["JobState"]:
            states.append(info["JobState"])
        if info["JobState"] in FINAL_STATES or (until is not None and until()):
            return info, states
        assert time.monotonic() < deadline, f"job {job_id} still {states} after {timeout} s"
        time.sleep(0.3)


def output(out: Path, job_id: str) -> str:
    return "\n".join(p.read_text() for p in out.glob(f"*-{job_id}.out"))


def losses(out: Path, name: str = "cpu_quickstart") -> tuple[list[int], list[float]]:
    """Steps and training losses of the run ``name`` in ``out/run`` (``metrics.jsonl``)."""
    path = out / "run" / name / "metrics.jsonl"
    records = [r for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]
    return [r["step"] for r in records], [r["loss"] for r in records]


def attempts(out: Path, job_id: str) -> list[str]:
    """The script's attempt log without timestamps, e.g. 'attempt 0 exit 75 requeue'."""
    lines = (out / "run" / "jobs" / job_id / "attempts.log").read_text().splitlines()
    return [line.split(" ", 2)[2] for line in lines if " start " not in line]


def wandb_ids(out: Path, name: str = "cpu_quickstart") -> list[str]:
    """The offline W&B run id of each attempt, in order."""
    return [p.name.rsplit("-", 1)[1] for p in sorted((out / "run" / name / "wandb")
                                                      .glob("offline-run-*"))]
