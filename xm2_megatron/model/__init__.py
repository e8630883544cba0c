"""Xmodel-2 on megatron-core: layer specs, the µP hook, parameter and FLOP counts."""

from xm2_megatron.model.builder import build_model, build_transformer_config, padded_vocab_size
from xm2_megatron.model.counting import count_parameters, training_flops_per_token
from xm2_megatron.model.mup import MupMultipliers, apply_mup, mup_multipliers

__all__ = [
    "MupMultipliers",
    "apply_mup",
    "build_model",
    "build_transformer_config",
    "count_parameters",
    "mup_multipliers",
    "padded_vocab_size",
    "training_flops_per_token",
]
