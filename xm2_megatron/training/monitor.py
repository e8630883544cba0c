"""Training monitor for the logging rank: console line, ``metrics.jsonl``, Weights & Biases, plots.

One ``Monitor`` per run, on the logging rank only. The loop calls ``log_step`` after every
optimizer step with plain floats (nothing here touches the device beyond reading CUDA's
memory counters, which do not synchronise); every ``train.log_interval`` steps it prints one
line (see ``LogLine``; the fields are described in docs/monitoring.md)::

    step    120/1000 | stable | loss 3.4567 | lr 1.000e-02 | grad 0.812 | batch 960 |
    44,400 tok/s | MFU 50.0% | mem 12.3/15.0 GiB | ETA 1h02m          (one line)

MFU is model FLOPs (``training_flops_per_token``) over the devices' dense BF16 peak
(``runtime.hardware.device_peak_flops``); ``-`` where the peak is unknown (CPU). Each step (and each
validation) is one JSON line in ``run_dir/metrics.jsonl`` and one W&B history row at
``step``; ``finish`` draws the PNGs (``plots.save_plots``) and closes the W&B run.
"""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import torch

from xm2_megatron.atomic import atomic_file
from xm2_megatron.config import ExperimentConfig, config_to_dict
from xm2_megatron.runtime.hardware import PEAK_FLOPS_ENV, device_name, device_peak_flops, mfu

GIB = 1024**3
WANDB_FINISH_TIMEOUT_S = 300.0  # the most time finish() waits for uploads; the rest stays on disk

def format_duration(seconds: float | None) -> str:
    """``2d03h``, ``1h02m``, ``4m05s`` or ``-`` (unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{s % 60:02d}s"


def memory_usage(device: torch.device) -> str:
    """``mem A/R GiB`` (CUDA max allocated / max reserved) on a GPU, ``rss X GiB`` elsewhere."""
    if device.type == "cuda":
        allocated = torch.cuda.max_memory_allocated(device) / GIB
        reserved = torch.cuda.max_memory_reserved(device) / GIB
        return f"mem {allocated:.1f}/{reserved:.1f} GiB"
    return f"rss {psutil.Process().memory_info().rss / GIB:.1f} GiB"


class StepTimer:
    """Moving average of the last ``window`` step times, for the ETA."""

    def __init__(self, window: int = 50):
        self._times: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self._times.append(seconds)

    def eta(self, steps_left: int) -> float | None:
        """Seconds for ``steps_left`` more steps at the current average; None before any step."""
        if not self._times:
            return None
        return steps_left * sum(self._times) / len(self._times)


@dataclass(frozen=True)
class LogLine:
    """The fields of one console line (values over one log interval)."""

    step: int
    total_steps: int
    stage: str
    loss: float  # mean over the interval's non-skipped steps
    lr: float
    grad_norm: float | None  # None when the step was skipped
    batch: int  # global batch size, sequences
    tokens_per_s: float
    mfu: float | None
    memory: str
    eta_s: float | None
    skipped: int = 0

    def __str__(self) -> str:
        fields = [
            f"step {self.step:>6}/{self.total_steps}", self.stage, f"loss {self.loss:.4f}",
            f"lr {self.lr:.3e}", "grad -" if self.grad_norm is None else f"grad {self.grad_norm:.3f}",
            f"batch {self.batch}",
            f"{self.tokens_per_s:,.0f} tok/s",
            "MFU -" if self.mfu is None else f"MFU {100 * self.mfu:.1f}%",
            self.memory, f"ETA {format_duration(self.eta_s)}",
        ]
        if self.skipped:
            fields.append(f"skipped {self.skipped}")
        return " | ".join(fields)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _describe(error: Exception) -> str:
    """``Type: message`` on one line."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def wandb_key_available(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether W&B can authenticate: WANDB_API_KEY (or an identity token file) or a netrc entry
    for the W&B host (WANDB_BASE_URL, default api.wandb.ai; the file from NETRC or ~/.netrc)."""
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str, environ: Mapping[str, str] = os.environ) -> str:
    """The W&B mode to run in: ``online`` only when a key is available, else ``offline``."""
    if requested == "online" and not wandb_key_available(environ):
        return "offline"
    return requested


def start_wandb(cfg: ExperimentConfig, run_dir: Path,
                resume_run_id: str | None = None) -> Any | None:
    """Start, or resume by id, the W&B run of ``cfg.logging`` under ``run_dir/wandb``.

    Returns the run, or None when W&B is disabled or cannot start (after a warning: an
    online start that fails is retried offline). The resolved config is logged once.
    """
    requested = cfg.logging.wandb_mode
    mode = resolve_wandb_mode(requested)
    if mode == "disabled":
        return None
    if mode != requested:
        _warn("logging.wandb_mode=online but no W&B API key (WANDB_API_KEY or a netrc entry): "
              f"logging offline under {run_dir / 'wandb'}; upload later with `wandb sync`")
    import wandb

    for attempt in ("online", "offline") if mode == "online" else (mode,):
        try:
            settings = wandb.Settings(silent=True, console=os.environ.get("WANDB_CONSOLE", "off"),
                                      finish_timeout=WANDB_FINISH_TIMEOUT_S)
            return wandb.init(
                project=cfg.logging.wandb_project, name=cfg.logging.run_name or cfg.name,
                dir=str(run_dir), mode=attempt, id=resume_run_id,
                resume="allow" if resume_run_id else None,
                config=config_to_dict(cfg), allow_val_change=True, settings=settings,
            )
        except Exception as e:  # W&B must never stop training
            then = "retrying offline" if attempt == "online" else "continuing without W&B"
            _warn(f"W&B {attempt} start failed ({_describe(e)}); {then}")
    return None


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` (empty when the file does not exist). A line that
    is not JSON (the torn last line of a killed run, a full disk) is dropped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                _warn(f"{path}:{number} is not a complete JSON record (a write cut short?): "
                      "dropped")
    return records


def _truncate_metrics(path: Path, start_step: int) -> None:
    """Keep only the records up to ``start_step`` (a resumed run rewrites what came after)."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= start_step]
    with atomic_file(path) as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def archive_earlier_run(run_dir: str | os.PathLike) -> Path | None:
    """Move a non-empty ``run_dir`` (an earlier run's metrics, plots and W&B files) aside to
    ``<run_dir>.<time of its last write>``, so that a run that does not continue it never
    overwrites them; returns where it went (None: nothing there)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    last_write = max(p.stat().st_mtime for p in run_dir.iterdir())
    stamp = datetime.fromtimestamp(last_write).strftime("%Y%m%d-%H%M%S")
    target, n = run_dir.with_name(f"{run_dir.name}.{stamp}"), 1
    while target.exists():
        target, n = run_dir.with_name(f"{run_dir.name}.{stamp}-{n}"), n + 1
    os.rename(run_dir, target)
    return target


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class Monitor:
    """Console line, ``metrics.jsonl``, W&B and plots of one run; use on the logging rank only.

    ``start_step`` is the step a resumed run continues from (records after it in an existing
    ``metrics.jsonl`` are dropped; 0 starts the file afresh). ``resume_run_id`` continues that
    W&B run. ``device`` (default: the current CUDA device, else CPU) picks the MFU peak and
    the memory figure; ``peak_flops`` overrides the peak.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: str | os.PathLike, flops_per_token: float,
                 world_size: int, resume_run_id: str | None = None, *, start_step: int = 0,
                 device: torch.device | None = None, peak_flops: float | None = None,
                 eta_window: int = 50):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.flops_per_token, self.world_size = flops_per_token, world_size
        self.device = device or _default_device()
        self.peak_flops = device_peak_flops(self.device, peak_flops)
        if self.peak_flops is None and self.device.type != "cpu":
            _warn(f"no peak FLOP/s known for {device_name(self.device)!r}: MFU shown as '-'; "
                  f"set {PEAK_FLOPS_ENV} (FLOP/s per device) to enable it")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        _truncate_metrics(self.metrics_path, start_step)
        self._jsonl = open(self.metrics_path, "a", buffering=1)
        self._timer = StepTimer(eta_window)
        self._process = psutil.Process()
        self._interval: list[dict] = []
        self._wandb = start_wandb(cfg, self.run_dir, resume_run_id)
        self._run_id = self._wandb.id if self._wandb is not None else resume_run_id
        self._wandb_first_step = self._wandb.step if self._wandb is not None else 0

    @property
    def run_id(self) -> str | None:
        """The W&B run id to store in the checkpoint (the given one while W&B is off)."""
        return self._run_id

    def log_step(self, step: int, stage: str, loss: float, lr: float, grad_norm: float,
                 tokens: int, seconds: float, skipped: bool = False) -> str | None:
        """Record optimizer step ``step`` (1-based) that took ``seconds`` for ``tokens`` tokens
        (the global batch); print and return the console line at each log interval."""
        tokens_per_s = tokens / seconds if seconds > 0 else 0.0
        record = {
            "step": step, "stage": stage, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "global_batch": self.cfg.train.global_batch_size_at(step - 1), "tokens": tokens,
            "seconds": seconds, "tokens_per_s": tokens_per_s,
            "mfu": mfu(tokens_per_s, self.flops_per_token, self.peak_flops, self.world_size),
            "skipped": skipped,
            "rss_gib": round(self._process.memory_info().rss / GIB, 4),
        }
        self._write(record)
        self._wandb_log({f"train/{k}": v for k, v in record.items()
                         if k not in ("step", "stage") and v is not None}, step)
        self._timer.add(seconds)
        self._interval.append(record)
        if step % self.cfg.train.log_interval and step != self.cfg.train.steps:
            return None
        line = str(self._interval_line(step, stage))
        self._interval = []
        print(line, flush=True)
        return line

    def log_validation(self, step: int, loss: float) -> str:
        """Record the held-out loss measured after step ``step``; print and return its line."""
        self._write({"step": step, "val_loss": loss})
        self._wandb_log({"val/loss": loss}, step)
        line = f"validation at step {step} | val loss {loss:.4f}"
        print(line, flush=True)
        return line

    def log_benchmarks(self, step: int, scores: dict[str, float]) -> str:
        """Record the in-loop benchmark scores after step ``step`` (``bench/<task>``)."""
        row = {f"bench/{task}": score for task, score in scores.items()}
        self._write({"step": step, **row})
        self._wandb_log(row, step)
        line = f"benchmarks at step {step} | " + " | ".join(
            f"{task} {score:.4f}" for task, score in scores.items())
        print(line, flush=True)
        return line

    def finish(self, exit_code: int = 0) -> dict[str, Path]:
        """Close ``metrics.jsonl``, draw the PNGs of the whole run (a failure only warns) and
        finish the W&B run; returns the PNG paths by name."""
        from xm2_megatron.training.plots import save_plots

        if not self._jsonl.closed:
            self._jsonl.close()
        pngs: dict[str, Path] = {}
        try:
            pngs = save_plots(read_metrics(self.metrics_path), self.run_dir)
        except Exception as e:
            _warn(f"could not draw the training plots ({_describe(e)})")
        if self._wandb is not None:
            try:
                self._wandb.finish(exit_code=exit_code)
            except Exception as e:
                _warn(f"W&B finish failed ({_describe(e)})")
            self._wandb = None
        return pngs

    def _interval_line(self, step: int, stage: str) -> LogLine:
        steps, last = self._interval, self._interval[-1]
        losses = [r["loss"] for r in steps if not r["skipped"]]
        seconds = sum(r["seconds"] for r in steps)
        tokens_per_s = sum(r["tokens"] for r in steps) / seconds if seconds > 0 else 0.0
        return LogLine(
            step=step, total_steps=self.cfg.train.steps, stage=stage,
            loss=sum(losses) / len(losses) if losses else math.nan, lr=last["lr"],
            grad_norm=last["grad_norm"], batch=last["global_batch"], tokens_per_s=tokens_per_s,
            mfu=mfu(tokens_per_s, self.flops_per_token, self.peak_flops, self.world_size),
            memory=memory_usage(self.device), eta_s=self._timer.eta(self.cfg.train.steps - step),
            skipped=len(steps) - len(losses),
        )

    def _write(self, record: dict) -> None:
        self._jsonl.write(json.dumps(record) + "\n")

    def _wandb_log(self, row: dict, step: int) -> None:
        """Log to W&B; steps a resumed online run already has are skipped, and an error
        turns W&B off (with a warning) instead of stopping training."""
        if self._wandb is None or step < self._wandb_first_step:
            return
        try:
            self._wandb.log(row, step=step)
        except Exception as e:
            _warn(f"W&B logging failed ({_describe(e)}); continuing without W&B")
            self._wandb = None
