"""Proxy families: a recipe's model at another width (head size fixed) or depth, all else the
same; what the coordinate check and the µTransfer sweep vary."""

from __future__ import annotations

import dataclasses

from xm2_megatron.config import ExperimentConfig


def width_config(base: ExperimentConfig, width: int, head_dim: int = 16) -> ExperimentConfig:
    """``base`` at hidden size ``width``: FFN 2.5 x width, ``head_dim`` wide heads, 2 heads
    per KV group (GQA; one per head for an odd head count)."""
    heads = width // head_dim
    model = dataclasses.replace(
        base.model,
        hidden_size=width,
        ffn_hidden_size=int(2.5 * width),
        num_attention_heads=heads,
        num_query_groups=heads // 2 if heads % 2 == 0 else heads,
    )
    return dataclasses.replace(base, model=model)


def depth_config(base: ExperimentConfig, num_layers: int) -> ExperimentConfig:
    """``base`` with ``num_layers`` transformer layers."""
    return dataclasses.replace(base, model=dataclasses.replace(base.model, num_layers=num_layers))
