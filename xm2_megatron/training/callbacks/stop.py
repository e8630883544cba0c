"""Stop on SIGTERM, SIGUSR1 (Slurm's warning before a time limit), SIGINT (Ctrl-C; a second
one interrupts at once) or after ``train.time_limit_minutes``: save at the next step boundary
on every rank and exit 75.

``tests/test_train_resume.py`` sends SIGTERM to every process of a run, its W&B service and
checkpoint writers included, as Slurm does.
"""

from __future__ import annotations

import signal
import time

import torch

from xm2_megatron.training.callback import Callback, StepEnd

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopSignal:
    """Turns the stop signals into a flag that every rank agrees on. Create it first thing:
    before its handler is installed a stop signal kills the process."""

    delivered = 0  # stop signals any StopSignal of this process has caught

    def __init__(self, signals=STOP_SIGNALS):
        self.received = False
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}

    def _handle(self, signum, frame):
        self.received = True
        StopSignal.delivered += 1
        if signum == signal.SIGINT:  # the next Ctrl-C interrupts (KeyboardInterrupt) at once
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def requested(self, device: torch.device | str = "cpu") -> bool:
        """True on every rank if any rank received a signal (a collective call)."""
        flag = torch.tensor([int(self.received)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class StopOnSignalOrTimeLimit(Callback):
    """Installs the signal handlers when created (before the model is built, so a signal
    during start-up is not lost) and puts the previous ones back at the end."""

    def __init__(self, time_limit_minutes: float | None = None):
        self.time_limit_s = None if time_limit_minutes is None else 60 * time_limit_minutes
        self.started = time.monotonic()
        self.signal = StopSignal()

    def on_step_end(self, trainer, end: StepEnd) -> None:
        if self.time_limit_s is not None and time.monotonic() - self.started > self.time_limit_s:
            self.signal.received = True
        if self.signal.requested(trainer.runtime.device) and end.step < trainer.cfg.train.steps:
            trainer.request_stop("signal or time limit")

    def on_stop(self, trainer, request) -> None:
        if request.reason == "signal or time limit" and trainer.runtime.is_main:
            print(f"stopped at step {trainer.step} on request (signal or time limit); "
                  f"exit {request.exit_code}", flush=True)

    def on_fit_end(self, trainer, exit_code: int) -> None:
        self.signal.restore()
