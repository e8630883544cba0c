"""Stop signals: SIGTERM and SIGUSR1 (Slurm's warning before a time limit) ask the run to save
at the next step boundary and exit (``tests/test_train_resume.py`` sends SIGTERM to every
process of a run, its W&B service and checkpoint writers included, as Slurm does)."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignal:
    """Turns the stop signals into a flag that every rank agrees on, so the loop can save and
    exit at the same step everywhere. Create it first thing: before its handler is installed
    a stop signal kills the process."""

    def __init__(self, signals=STOP_SIGNALS):
        self.received = False
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}

    def _handle(self, signum, frame):
        self.received = True

    def requested(self) -> bool:
        """True on every rank if any rank received a signal (a collective call)."""
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        flag = torch.tensor([int(self.received)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
