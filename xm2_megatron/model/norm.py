"""RMSNorm for megatron's local (CPU) layers that also runs under sequence parallelism.

megatron's local spec builds its norms with ``WrappedTorchNorm``, which refuses sequence
parallelism. ``LocalRMSNorm`` computes exactly what ``torch.nn.RMSNorm`` computes (same
``weight`` parameter, same state-dict key) and marks its weight ``sequence_parallel``: under
sequence parallelism each TP rank normalises its slice of the sequence, so megatron's
gradient finalisation sums the weight's gradient over the TP group, as it does for
Transformer Engine's norms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer import TransformerConfig


class LocalRMSNorm(torch.nn.Module):
    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5,
                 **_unused):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        self.weight.sequence_parallel = config.sequence_parallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
