"""Optimizer-side schedules: the paper's WSD learning rate."""

from xm2_megatron.optim.schedule import WSDScheduler, lr_factor

__all__ = ["WSDScheduler", "lr_factor"]
