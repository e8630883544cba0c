"""Core attention on PyTorch's fused ``scaled_dot_product_attention`` for the local layer spec.

A drop-in for megatron's unfused ``DotProductAttention`` (same constructor and forward):
GQA goes to SDPA as ``enable_gqa`` (K/V are not repeated) and the causal mask as
``is_causal`` (no ``s x s`` mask or score tensor in memory), so a GPU without Transformer
Engine gets flash/cuDNN attention in bf16. Softmax scale, heads per tensor-parallel
partition and masks follow ``DotProductAttention``; what it cannot do is refused when the
layer is built or called.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.utils import is_layer_window_attention
from megatron.core.utils import divide


class SDPAttention(MegatronModule):
    """Self-attention core ``softmax(q k^T * scale + mask) v`` on ``[s, b, heads, head_dim]``
    inputs, returning ``[s, b, heads * head_dim]`` like ``DotProductAttention``."""

    def __init__(self, config, layer_number, attn_mask_type, attention_type,
                 attention_dropout=None, softmax_scale=None, cp_comm_type=None,
                 pg_collection=None):
        super().__init__(config=config)
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        _require(dropout == 0.0, f"attention_dropout={dropout} (only 0 is supported)")
        _require(config.context_parallel_size == 1,
                 f"context_parallel_size={config.context_parallel_size} (only 1 is supported)")
        _require(config.softmax_type == "vanilla",
                 f"softmax_type={config.softmax_type!r} (only 'vanilla' is supported)")
        _require(not is_layer_window_attention(config.window_size, config.window_attn_skip_freq,
                                               layer_number),
                 f"window_size={config.window_size} (sliding-window attention is not supported)")
        _require(attn_mask_type in (AttnMaskType.causal, AttnMaskType.no_mask),
                 f"attn_mask_type={attn_mask_type.name} (only causal and no_mask are supported)")
        if pg_collection is None:
            pg_collection = ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp"])
        tp = pg_collection.tp.size()
        self.layer_number = max(1, layer_number)
        self.attn_mask_type = attn_mask_type
        self.num_attention_heads_per_partition = divide(config.num_attention_heads, tp)
        self.num_query_groups_per_partition = divide(config.num_query_groups, tp)
        # DotProductAttention divides by the layer number for query-key layer scaling and
        # multiplies it back in its fp32 softmax: the net scale is this one either way.
        self.softmax_scale = (1.0 / math.sqrt(config.kv_channels) if softmax_scale is None
                              else softmax_scale)

    def forward(self, query, key, value, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        """``query`` ``[sq, b, np, hn]``, ``key``/``value`` ``[sk, b, ng, hn]`` -> ``[sq, b, np*hn]``.

        ``attention_mask`` is megatron's boolean mask (True = masked out), broadcastable to
        ``[b, np, sq, sk]``; as in ``DotProductAttention`` it replaces the causal mask when
        given. Without one, a causal layer masks future keys (none for one query token).
        """
        _require(attention_bias is None, "attention_bias (not supported)")
        _require(packed_seq_params is None, "packed_seq_params (packed sequences are not supported)")
        mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type
        sq, b, heads, head_dim = query.shape
        sk = key.size(0)
        is_causal = attention_mask is None and mask_type == AttnMaskType.causal and sq > 1
        _require(not is_causal or sq == sk,
                 f"a causal mask with {sq} queries and {sk} keys (self-attention only)")
        _require(attention_mask is None or attention_mask.dtype == torch.bool,
                 f"attention_mask of dtype {getattr(attention_mask, 'dtype', None)} (must be bool)")
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, hn]
        context = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=None if attention_mask is None else ~attention_mask,
            is_causal=is_causal,
            scale=self.softmax_scale,
            enable_gqa=heads != key.size(2),
        )
        return context.permute(2, 0, 1, 3).reshape(sq, b, heads * head_dim)


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"SDPAttention does not support {what}: use model.local_attention=megatron "
                         "or the Transformer Engine spec")
