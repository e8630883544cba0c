"""Parameter and training-FLOP counts from the config alone (no model is allocated)."""

from __future__ import annotations

from dataclasses import dataclass

from xm2_megatron.config import ModelConfig


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of the decoder, by part."""

    embedding: int
    per_layer: int
    layers: int
    final_norm: int
    output_layer: int  # 0 when tied to the embedding

    @property
    def total(self) -> int:
        return self.embedding + self.layers + self.final_norm + self.output_layer


def _layer_matmul_params(model: ModelConfig) -> int:
    d, hd = model.hidden_size, model.head_dim
    q = model.num_attention_heads * hd
    kv = model.num_query_groups * hd
    attention = d * (q + 2 * kv) + q * d
    mlp = 3 * d * model.ffn_hidden_size  # SwiGLU: gate, up, down
    return attention + mlp


def count_parameters(model: ModelConfig, vocab_size: int | None = None) -> ParameterCount:
    """Parameters of the model; ``vocab_size`` overrides the config's (e.g. padded)."""
    vocab = model.vocab_size if vocab_size is None else vocab_size
    d = model.hidden_size
    per_layer = _layer_matmul_params(model) + 2 * d  # + two RMSNorm weights
    return ParameterCount(
        embedding=vocab * d,
        per_layer=per_layer,
        layers=model.num_layers * per_layer,
        final_norm=d,
        output_layer=0 if model.tie_embeddings else vocab * d,
    )


def training_flops_per_token(model: ModelConfig, seq_length: int | None = None) -> float:
    """Forward + backward FLOPs per token: 6 x every matmul parameter (the LM head
    included, tied or not) plus 12 x layers x (heads x head_dim) x sequence for attention."""
    seq = model.seq_length if seq_length is None else seq_length
    matmul_params = model.num_layers * _layer_matmul_params(model)
    matmul_params += model.vocab_size * model.hidden_size
    attention = 12 * model.num_layers * model.num_attention_heads * model.head_dim * seq
    return 6.0 * matmul_params + attention
