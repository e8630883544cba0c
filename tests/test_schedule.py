"""The WSD learning rate equals the paper's formula at sampled steps, for every µP group."""

import math

import pytest

from xm2_megatron.config import ScheduleConfig
from xm2_megatron.optim.schedule import lr_at
from xm2_megatron.training.state import build_optimizer, build_training_state

PAPER = ScheduleConfig(warmup_steps=2000, decay_style="half_life", decay_start=10_000,
                       half_life_steps=5000)


@pytest.mark.parametrize("step, expected", [
    (0, 0.01 / 2000),             # the first update already has a learning rate
    (999, 0.01 * 1000 / 2000),
    (1999, 0.01),                 # warmup reaches max_lr on its last step
    (2000, 0.01),
    (9999, 0.01),                 # stable
    (10_000, 0.01),               # decay starts at 0.5 ** 0
    (12_500, 0.01 * 0.5 ** 0.5),
    (15_000, 0.005),              # one half-life T = 5000 steps
    (25_000, 0.00125),            # three half-lives
])
def test_half_life_decay_is_the_paper_formula(step, expected):
    assert lr_at(step, PAPER, 0.01, 0.0) == pytest.approx(expected, rel=1e-12)


def test_half_life_is_floored_by_min_lr():
    assert lr_at(100_000, PAPER, 0.01, 1e-4) == 1e-4
    assert lr_at(15_000, PAPER, 0.01, 1e-4) == pytest.approx(0.005)


@pytest.mark.parametrize("style, step, expected", [
    ("linear", 100, 0.01),
    ("linear", 150, 0.001 + 0.009 * 0.5),
    ("linear", 200, 0.001),
    ("linear", 500, 0.001),
    ("cosine", 150, 0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 0.5))),
    ("cosine", 125, 0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 0.25))),
    ("cosine", 300, 0.001),
    ("constant", 10_000, 0.01),
])
def test_linear_cosine_constant(style, step, expected):
    schedule = ScheduleConfig(warmup_steps=10, decay_style=style, decay_start=100, decay_steps=100)
    assert lr_at(step, schedule, 0.01, 0.001) == pytest.approx(expected, rel=1e-12)


def test_every_group_follows_its_own_max_lr(megatron_runtime, tiny_config):
    """Drive megatron's optimizer groups through the scheduler and read each group's lr."""
    cfg = tiny_config("schedule.warmup_steps=4", "schedule.decay_start=6",
                      "schedule.half_life_steps=3", "optimizer.use_distributed_optimizer=false")
    model, optimizer, scheduler = build_training_state(cfg)
    width_mult = cfg.model.hidden_size / cfg.mup.dim_model_base
    max_lrs = sorted({group["max_lr"] for group in optimizer.param_groups})
    assert max_lrs == pytest.approx(sorted({cfg.optimizer.lr, cfg.optimizer.lr / width_mult}))
    for step in range(14):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(lr_at(step, cfg.schedule, group["max_lr"], 0.0))
        scheduler.step(increment=1)
    restored = build_optimizer(cfg, model)[1]
    restored.load_state_dict(scheduler.state_dict())
    assert restored.num_steps == 14
    assert restored.get_lr({"max_lr": 0.01, "min_lr": 0.0}) == pytest.approx(0.01 * 0.5 ** (8 / 3))
