"""The Xmodel-2 (MiniCPM) Warmup-Stable-Decay learning rate, counted in optimizer steps.

For the update of optimizer step ``s`` (0-based), with warmup ``W``, decay start ``S``:

- warmup, ``s < W``: ``max_lr * (s + 1) / W`` (the first update already moves the weights)
- stable, ``W <= s < S``: ``max_lr``
- decay, ``s >= S``: ``half_life``: ``max_lr * 0.5 ** ((s - S) / T)`` (the paper's
  exponential annealing with half-life ``T``; not megatron's WSD "exponential", which is
  ``2 * 0.5 ** r - 1`` and reaches 0 at the end); ``linear`` / ``cosine``: from ``max_lr`` to
  ``min_lr`` over ``decay_steps``, then ``min_lr``.

``min_lr`` floors every style. Each optimizer group follows the same shape from its own
``max_lr`` / ``min_lr``, so µP's hidden groups run at ``lr / width_mult`` throughout.
"""

from __future__ import annotations

import math

from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from xm2_megatron.config import ScheduleConfig


def lr_factor(step: int, schedule: ScheduleConfig) -> float:
    """The fraction of the way from ``min_lr`` (0) to ``max_lr`` (1) at optimizer step ``step``;
    for ``half_life`` the fraction of ``max_lr`` itself."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.decay_start is None or step < schedule.decay_start or schedule.decay_style == "constant":
        return 1.0
    elapsed = step - schedule.decay_start
    if schedule.decay_style == "half_life":
        return 0.5 ** (elapsed / schedule.half_life_steps)
    progress = min(elapsed / schedule.decay_steps, 1.0)
    if schedule.decay_style == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, schedule: ScheduleConfig, max_lr: float, min_lr: float) -> float:
    """The learning rate of a group with ``max_lr`` / ``min_lr`` at optimizer step ``step``."""
    factor = lr_factor(step, schedule)
    if step < schedule.warmup_steps:
        return max_lr * factor
    if schedule.decay_style == "half_life":
        return max(min_lr, max_lr * factor)
    return min_lr + (max_lr - min_lr) * factor


class WSDScheduler(OptimizerParamScheduler):
    """megatron's parameter scheduler (state dict, weight decay, per-group ``max_lr``/``min_lr``)
    with the learning rate of :func:`lr_at`. ``num_steps`` counts completed updates, so the
    group lrs it sets are those of the next step."""

    def __init__(self, optimizer, schedule: ScheduleConfig, max_lr: float, min_lr: float,
                 weight_decay: float):
        self.schedule = schedule
        super().__init__(
            optimizer,
            init_lr=0.0,
            max_lr=max_lr,
            min_lr=min_lr,
            lr_warmup_steps=schedule.warmup_steps,
            lr_decay_steps=schedule.warmup_steps + 1,  # unused: get_lr replaces megatron's decay
            lr_decay_style="constant",
            start_wd=weight_decay,
            end_wd=weight_decay,
            wd_incr_steps=1,
            wd_incr_style="constant",
        )

    def get_lr(self, param_group: dict) -> float:
        return lr_at(
            self.num_steps,
            self.schedule,
            param_group.get("max_lr", self.max_lr),
            param_group.get("min_lr", self.min_lr),
        )
