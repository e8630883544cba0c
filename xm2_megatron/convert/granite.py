"""The Hugging Face ``GraniteConfig`` of an Xmodel-2 model shape and µP settings.

Granite has exactly the four scalars a MiniCPM-style µP model needs, so a trained model
runs in stock ``transformers`` (no remote code):

- ``embedding_multiplier`` = µP op 1 (``scale_emb``)
- ``residual_multiplier``  = µP op 2 (``scale_depth / sqrt(L)``), after attention and MLP
- ``logits_scaling``       = µP op 5 as a DIVISOR (``width_mult``; the model multiplies by
  ``1 / width_mult``)
- ``attention_multiplier`` = the softmax scale (``1/sqrt(head_dim)`` or µP's ``1/head_dim``)

With µP off every multiplier is 1 and the attention multiplier is ``1/sqrt(head_dim)``.
"""

from __future__ import annotations

import math

import torch
from transformers import GraniteConfig

from xm2_megatron.config import ModelConfig, MupConfig
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.data.tokenizer import BOS_ID, EOS_ID
from xm2_megatron.model.mup import mup_multipliers

ARCHITECTURE = "GraniteForCausalLM"


def granite_config(model: ModelConfig, mup: MupConfig, *, dtype: torch.dtype = torch.float32,
                   bos_token_id: int = BOS_ID, eos_token_id: int = EOS_ID) -> GraniteConfig:
    """A ``GraniteConfig`` that computes what the megatron model of ``model`` / ``mup`` computes.

    ``vocab_size`` is the tokenizer's (unpadded) size; ``dtype`` is recorded as the weights'
    dtype. There is no pad token (the Xmodel-2 tokenizer has none).
    """
    m = mup_multipliers(model, mup)
    softmax_scale = m.softmax_scale if m.softmax_scale is not None else 1.0 / math.sqrt(model.head_dim)
    return GraniteConfig(
        architectures=[ARCHITECTURE],
        vocab_size=model.vocab_size,
        hidden_size=model.hidden_size,
        intermediate_size=model.ffn_hidden_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups,
        hidden_act="silu",
        max_position_embeddings=model.seq_length,
        initializer_range=mup.init_std,
        rms_norm_eps=model.norm_eps,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=None,
        tie_word_embeddings=model.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(model.rotary_base)},
        attention_bias=False,
        mlp_bias=False,
        embedding_multiplier=m.embedding,
        residual_multiplier=m.residual,
        logits_scaling=m.width_mult,
        attention_multiplier=softmax_scale,
        dtype=dtype,
    )


SUPPORTED_TYPES = ("granite", "llama")


def _shortest(value: float, exact) -> float:
    """The shortest decimal rounding of ``value`` for which ``exact`` holds (else ``value``)."""
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if exact(candidate):
            return candidate
    return value


def model_fields(hf, where: str) -> dict:
    """The ``model`` section of a Granite or Llama config (``transformers`` config object);
    ``ConversionError`` names the field for anything megatron's GPT model cannot express."""
    def unsupported(field: str, value, expected: str) -> ConversionError:
        return ConversionError(f"{where}: {field}={value!r} is not supported: {expected}")

    if hf.model_type not in SUPPORTED_TYPES:
        raise unsupported("model_type", hf.model_type, f"must be one of {', '.join(SUPPORTED_TYPES)}")
    if getattr(hf, "hidden_act", "silu") != "silu":
        raise unsupported("hidden_act", hf.hidden_act, "the MLP must be SwiGLU ('silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(hf, flag, False):
            raise unsupported(flag, True, "the model has no biases")
    rope = getattr(hf, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise unsupported("rope_parameters.rope_type", rope.get("rope_type"), "only plain RoPE ('default')")
    theta = float(rope.get("rope_theta", 10000.0))
    if theta != int(theta):
        raise unsupported("rope_parameters.rope_theta", theta, "megatron takes an integer RoPE base")
    heads, hidden = hf.num_attention_heads, hf.hidden_size
    head_dim = getattr(hf, "head_dim", None)
    if hidden % heads or (head_dim is not None and head_dim != hidden // heads):
        raise unsupported("head_dim", head_dim or hidden / heads,
                          f"must be hidden_size / num_attention_heads = {hidden} / {heads}")
    return {
        "hidden_size": hidden,
        "ffn_hidden_size": hf.intermediate_size,
        "num_layers": hf.num_hidden_layers,
        "num_attention_heads": heads,
        "num_query_groups": hf.num_key_value_heads or heads,
        "vocab_size": hf.vocab_size,
        "seq_length": hf.max_position_embeddings,
        "tie_embeddings": bool(hf.tie_word_embeddings),
        "rotary_base": theta,
        "norm_eps": float(hf.rms_norm_eps),
    }


def mup_fields(hf, model: dict, where: str) -> dict:
    """The ``mup`` section that reproduces a config's multipliers (``enabled: false`` when the
    embedding, residual and logits multipliers are all 1, as in Llama)."""
    head_dim = model["hidden_size"] // model["num_attention_heads"]
    attention = float(getattr(hf, "attention_multiplier", 1.0 / math.sqrt(head_dim)))
    if math.isclose(attention, 1.0 / math.sqrt(head_dim), rel_tol=1e-6):
        fields = {"attention_scale": "sqrt"}
    elif math.isclose(attention, 1.0 / head_dim, rel_tol=1e-6):
        fields = {"attention_scale": "linear"}
    else:
        raise ConversionError(f"{where}: attention_multiplier={attention!r} is not supported: must be "
                              f"1/sqrt(head_dim) or 1/head_dim (head_dim {head_dim})")
    embedding = float(getattr(hf, "embedding_multiplier", 1.0))
    residual = float(getattr(hf, "residual_multiplier", 1.0))
    logits = float(getattr(hf, "logits_scaling", 1.0))
    if embedding == residual == logits == 1.0:
        return {**fields, "enabled": False}
    hidden, layers = model["hidden_size"], model["num_layers"]
    base = hidden / logits
    if base != round(base) or hidden / round(base) != logits:
        raise ConversionError(f"{where}: logits_scaling={logits!r} is not supported: µP needs "
                              f"hidden_size / logits_scaling (= {base}) to be a whole dim_model_base")
    depth = _shortest(residual * math.sqrt(layers), lambda s: s / math.sqrt(layers) == residual)
    return {**fields, "enabled": True, "scale_emb": embedding, "dim_model_base": round(base),
            "scale_depth": depth}
