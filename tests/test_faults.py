"""Non-finite losses and gradients skip the update on every rank; K in a row stop the run."""

import pytest
import torch

from tests.launch import run_trainer
from xm2_megatron.data.synthetic import synthetic_batch
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.step import train_step


def _batches(cfg, poison=False):
    batches = [synthetic_batch(i * 2, 2, cfg.model.seq_length, cfg.model.vocab_size, 1) for i in range(4)]
    if poison:
        batches[2]["loss_mask"][0, 3] = float("nan")
    return batches


@pytest.mark.parametrize("distributed_optimizer", ["true", "false"])
def test_nan_step_is_skipped_and_the_next_applies(megatron_runtime, tiny_config, distributed_optimizer):
    cfg = tiny_config(f"optimizer.use_distributed_optimizer={distributed_optimizer}",
                      "schedule.warmup_steps=0")
    model, optimizer, scheduler = build_training_state(cfg)
    weights = [p.detach().clone() for p in model[0].parameters()]
    result = train_step(model, optimizer, scheduler, _batches(cfg, poison=True))
    assert not result.update_successful and result.loss != result.loss  # NaN
    assert all(torch.equal(w, p) for w, p in zip(weights, model[0].parameters()))
    assert scheduler.num_steps == 0
    result = train_step(model, optimizer, scheduler, _batches(cfg))
    assert result.update_successful and scheduler.num_steps == 1
    assert not all(torch.equal(w, p) for w, p in zip(weights, model[0].parameters()))
    assert all(torch.isfinite(p).all() for p in model[0].parameters())


def test_consecutive_nan_steps_stop_the_run(tmp_path):
    """lr 1e6 makes the loss blow up to NaN/Inf; the run stops with exit 3 and one message."""
    result = run_trainer("recipes/cpu_quickstart.yaml", "optimizer.lr=1e6",
                         "optimizer.clip_grad=0.0", "schedule.warmup_steps=0",
                         "schedule.decay_start=null", "train.max_skipped_steps=2",
                         "train.steps=30", f"logging.output_dir={tmp_path}", timeout=300,
                         env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 3, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "2 consecutive steps had a non-finite loss or gradient" in errors[0]
    assert "Traceback" not in result.stderr
