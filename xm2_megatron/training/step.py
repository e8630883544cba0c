"""One training step on megatron-core's forward-backward schedules.

The loss is summed per token and divided by the global token count in megatron's
``finalize_model_grads`` (``calculate_per_token_loss``), so every TP/PP/DP layout and
every micro-batch split computes the same gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean loss per token over the global batch
    grad_norm: float | None
    lr: float  # the base (embedding) group's lr of this update; µP hidden groups: lr/width_mult
    update_successful: bool


def _loss_func(loss_mask: torch.Tensor, output: torch.Tensor):
    mask = loss_mask.reshape(-1).float()
    loss_sum = torch.sum(output.float().reshape(-1) * mask)
    num_tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach(), num_tokens.detach().float()])
    return loss_sum, num_tokens, {"lm loss": report}


def forward_step(data_iterator, model):
    """megatron's forward-step contract: the output and a loss function for it."""
    batch = next(data_iterator)
    device = next(model.parameters()).device
    batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return output, partial(_loss_func, batch["loss_mask"])


def _device(model) -> torch.device:
    """Where this rank's model lives (and so its collectives' tensors)."""
    return next(model[0].parameters()).device


def _global_mean_loss(reports: list[dict], device: torch.device) -> float:
    """Token-weighted mean loss over micro-batches and DP ranks, known to every rank."""
    totals = torch.zeros(2, dtype=torch.float64)
    if parallel_state.is_pipeline_last_stage():
        for report in reports:
            totals += report["lm loss"].detach().to("cpu", torch.float64)
    totals = totals.to(device)
    torch.distributed.all_reduce(totals, group=parallel_state.get_data_parallel_group())
    torch.distributed.broadcast(
        totals,
        src=parallel_state.get_pipeline_model_parallel_last_rank(),
        group=parallel_state.get_pipeline_model_parallel_group(),
    )
    return float(totals[0] / totals[1])


def forward_backward(model, microbatches: list[dict], forward_only: bool = False) -> float:
    """Run the forward(-backward) pass over this rank's micro-batches; returns the loss.

    After it (not ``forward_only``), each parameter's ``main_grad`` holds the finalised
    gradient of the global mean loss.
    """
    for chunk in model:
        chunk.zero_grad_buffer()
    tokens = microbatches[0]["tokens"]
    # the interleaved schedule takes one iterator per chunk: each chunk sees every micro-batch
    data = [iter(microbatches) for _ in model] if len(model) > 1 else iter(microbatches)
    reports = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=data,
        model=model,
        num_microbatches=len(microbatches),
        seq_length=tokens.shape[1],
        micro_batch_size=tokens.shape[0],
        forward_only=forward_only,
    )
    return _global_mean_loss(reports, _device(model))


def gradients_are_finite(model) -> bool:
    """Whether every rank's gradient buffers are free of NaN/Inf (one sum per buffer and a
    one-element all-reduce; a NaN or Inf anywhere makes a buffer's sum non-finite)."""
    bad = torch.zeros(1, device=_device(model))
    for chunk in model:
        for buffer in chunk.buffers + chunk.expert_parallel_buffers:
            bad += (~torch.isfinite(buffer.grad_data.sum())).float()
    torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    return bool(bad.item() == 0)


def train_step(model, optimizer, scheduler, microbatches: list[dict]) -> StepResult:
    """Forward, backward, clip and update; the scheduler advances after a good update.

    A non-finite loss or gradient skips the update (``update_successful`` False) on every
    rank alike; the weights, optimizer state and learning rate stay as they were.
    """
    base_lr = scheduler.get_lr({"max_lr": scheduler.max_lr, "min_lr": scheduler.min_lr})
    optimizer.zero_grad()
    loss = forward_backward(model, microbatches)
    if not (math.isfinite(loss) and gradients_are_finite(model)):
        optimizer.zero_grad()
        return StepResult(loss, None, base_lr, False)
    update_successful, grad_norm, _ = optimizer.step()
    if update_successful:
        scheduler.step(increment=1)
    return StepResult(loss, grad_norm, base_lr, update_successful)
