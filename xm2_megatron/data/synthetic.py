"""A learnable synthetic token stream for smoke runs and parallel-parity tests.

Each sample is an arithmetic progression modulo a small alphabet, with its start and
stride drawn from ``(seed, sample index)``: a model can learn it (the loss falls well below
``ln(vocab)``), and every rank can produce any global sample without coordination.
"""

from __future__ import annotations

import torch


def synthetic_sample(index: int, seq_length: int, vocab_size: int, seed: int) -> torch.Tensor:
    """Tokens ``[seq_length + 1]`` of global sample ``index`` (inputs and shifted labels)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    alphabet = min(vocab_size - 3, 512)
    start = int(torch.randint(alphabet, (1,), generator=gen))
    stride = int(torch.randint(1, 8, (1,), generator=gen))
    positions = torch.arange(seq_length + 1)
    return 3 + (start + stride * positions) % alphabet


def synthetic_batch(
    first_index: int, batch_size: int, seq_length: int, vocab_size: int, seed: int
) -> dict[str, torch.Tensor]:
    """A megatron GPT batch (tokens, labels, loss_mask, position_ids) of consecutive samples."""
    samples = torch.stack(
        [synthetic_sample(first_index + i, seq_length, vocab_size, seed) for i in range(batch_size)]
    )
    return {
        "tokens": samples[:, :-1].contiguous(),
        "labels": samples[:, 1:].contiguous(),
        "loss_mask": torch.ones(batch_size, seq_length, dtype=torch.float32),
        "position_ids": torch.arange(seq_length).unsqueeze(0).expand(batch_size, -1).contiguous(),
    }


def rank_microbatches(
    first_sample: int,
    global_batch: int,
    micro_batch: int,
    dp_rank: int,
    dp_size: int,
    seq_length: int,
    vocab_size: int,
    seed: int,
) -> list[dict[str, torch.Tensor]]:
    """One DP rank's micro-batches of the global batch that starts at ``first_sample``.

    Each rank takes a contiguous block of ``global_batch / dp_size`` samples, so the union
    over ranks is the same global batch whatever the layout.
    """
    per_rank = global_batch // dp_size
    start = first_sample + dp_rank * per_rank
    return [
        synthetic_batch(start + i * micro_batch, micro_batch, seq_length, vocab_size, seed)
        for i in range(per_rank // micro_batch)
    ]
