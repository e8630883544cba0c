"""Pass@k for the code tasks (HumanEval, MBPP) with no hub: lm-eval's own metric is ``evaluate``'s
``code_eval``, a script fetched from the Hugging Face hub. Each program (the model's code, then
the item's tests) runs in a fresh ``python -I`` process in an empty temporary folder, with a
timeout and a memory cap; it passes when it exits with status 0. As with ``code_eval``, nothing
runs unless ``HF_ALLOW_CODE_EVAL=1``. This is no sandbox: the code runs as the current user.

``write_task_folder`` copies this file next to the task YAMLs as ``xm2_code.py`` (their
``!function`` entries); it imports nothing from xm2_megatron.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
from math import comb
from pathlib import Path

TIMEOUT_S = 10.0  # per program (code_eval: 3 s; more here for a loaded machine)
MEMORY_BYTES = 4 << 30  # address-space cap of each program


class CodeEvalNotAllowed(RuntimeError):
    """Model-written code would run, and HF_ALLOW_CODE_EVAL=1 is not set."""


def allowed() -> bool:
    return os.environ.get("HF_ALLOW_CODE_EVAL") == "1"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def passes(program: str, timeout: float = TIMEOUT_S) -> bool:
    """Whether ``program`` runs to completion with exit status 0 within ``timeout`` seconds."""
    if not allowed():
        raise CodeEvalNotAllowed("the code tasks run the model's code: set HF_ALLOW_CODE_EVAL=1 "
                                 "to allow it (on a machine where that is acceptable)")
    with tempfile.TemporaryDirectory(prefix="xm2_code_") as folder:
        Path(folder, "program.py").write_text(program, encoding="utf-8")
        process = subprocess.Popen([sys.executable, "-I", "program.py"], cwd=folder,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_limit_memory)
        try:
            ok = process.wait(timeout=timeout) == 0
        except subprocess.TimeoutExpired:
            ok = False
        try:  # the program's whole process group, children included
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
    return ok


def _estimate(n: int, correct: int, k: int) -> float:
    """The unbiased pass@k of ``correct`` passing samples out of ``n`` (Chen et al., 2021)."""
    return 1.0 if n - correct < k else 1.0 - comb(n - correct, k) / comb(n, k)


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | int = 1
              ) -> dict[str, float]:
    """HumanEval's metric, as lm-eval's ``pass_at_k``: {"pass@K": mean over the references}."""
    ks = [k] if isinstance(k, int) else list(k)
    counts = [(len(samples), sum(passes(code + "\n" + test) for code in samples))
              for test, samples in zip(references, predictions, strict=True)]
    return {f"pass@{kk}": sum(_estimate(n, c, kk) for n, c in counts) / len(counts)
            for kk in ks}


def pass_at_1(references: str | list[str], predictions: str | list[str] | list[list[str]]
              ) -> float:
    """MBPP's metric, as lm-eval's ``pass_at_1``: the share of programs whose tests pass."""
    refs = [references] if isinstance(references, str) else references
    preds = [[predictions]] if isinstance(predictions, str) else [
        [p] if isinstance(p, str) else p for p in predictions]
    return pass_at_k(refs, preds, 1)["pass@1"]


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """HumanEval's filter (lm-eval's): the prompt's signature and docstring, then the completion."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs, strict=True)]
