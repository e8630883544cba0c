"""Megatron <-> Hugging Face (Granite / Llama layout) tensor mapping at TP1/PP1.

Megatron packs ``linear_qkv`` per KV group (for each of the ``ng`` groups: its ``np/ng``
query heads, then one k head, then one v head) and ``linear_fc1`` as [gate; up]; its
vocabulary is padded (rows past ``vocab_size`` are sliced off on export and restored as
zeros on import). Local-spec names (``input_layernorm``, ``pre_mlp_layernorm``) and
Transformer Engine names (``linear_qkv.layer_norm_weight``, ``linear_fc1.layer_norm_weight``)
are both accepted; ``_extra_state`` entries are ignored.
"""

from __future__ import annotations

import re

import torch

from xm2_megatron.config import ModelConfig
from xm2_megatron.convert.errors import ConversionError

_TE_TO_LOCAL = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
}
# per-layer megatron name -> HF name (qkv and fc1 are split separately)
_LAYER_NAMES = {
    "input_layernorm.weight": "input_layernorm.weight",
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


def local_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with TE layer-norm names renamed to the local spec's, extra state dropped."""
    out = {}
    for name, tensor in state.items():
        if name.endswith("._extra_state"):
            continue
        for te, local in _TE_TO_LOCAL.items():
            if name.endswith("." + te):
                name = name[: -len(te)] + local
        out[name] = tensor
    return out


def _qkv_shape(model: ModelConfig) -> tuple[int, int, int, int]:
    groups = model.num_query_groups
    return groups, model.num_attention_heads // groups + 2, model.head_dim, model.hidden_size


def split_qkv(weight: torch.Tensor, model: ModelConfig) -> tuple[torch.Tensor, ...]:
    """Megatron's per-group [q heads; k; v] rows -> (q, k, v) in HF's head order."""
    groups, per_group, head_dim, hidden = _qkv_shape(model)
    packed = weight.reshape(groups, per_group, head_dim, hidden)
    q, k, v = packed.split([per_group - 2, 1, 1], dim=1)
    return (q.reshape(-1, hidden).contiguous(), k.reshape(-1, hidden).contiguous(),
            v.reshape(-1, hidden).contiguous())


def pack_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, model: ModelConfig) -> torch.Tensor:
    """HF's q, k, v -> megatron's per-group packing (the inverse of :func:`split_qkv`)."""
    groups, per_group, head_dim, hidden = _qkv_shape(model)
    parts = [q.reshape(groups, per_group - 2, head_dim, hidden),
             k.reshape(groups, 1, head_dim, hidden), v.reshape(groups, 1, head_dim, hidden)]
    return torch.cat(parts, dim=1).reshape(-1, hidden)


def megatron_to_hf(state: dict[str, torch.Tensor], model: ModelConfig) -> dict[str, torch.Tensor]:
    """A whole (TP1/PP1) megatron state dict -> HF Granite/Llama tensors, vocab padding removed."""
    state = local_names(state)
    vocab = model.vocab_size
    out = {"model.embed_tokens.weight": state.pop("embedding.word_embeddings.weight")[:vocab],
           "model.norm.weight": state.pop("decoder.final_layernorm.weight")}
    output = state.pop("output_layer.weight", None)
    if not model.tie_embeddings:
        out["lm_head.weight"] = output[:vocab]
    for name, tensor in state.items():
        match = _LAYER.match(name)
        if match is None:
            raise ConversionError(f"unexpected megatron weight {name!r}")
        prefix, local = f"model.layers.{match.group(1)}.", match.group(2)
        if local == "self_attention.linear_qkv.weight":
            q, k, v = split_qkv(tensor, model)
            out.update({prefix + "self_attn.q_proj.weight": q, prefix + "self_attn.k_proj.weight": k,
                        prefix + "self_attn.v_proj.weight": v})
        elif local == "mlp.linear_fc1.weight":
            gate, up = tensor.chunk(2, dim=0)
            out.update({prefix + "mlp.gate_proj.weight": gate.contiguous(),
                        prefix + "mlp.up_proj.weight": up.contiguous()})
        elif local in _LAYER_NAMES:
            out[prefix + _LAYER_NAMES[local]] = tensor
        else:
            raise ConversionError(f"unexpected megatron weight {name!r}")
    return {name: tensor.contiguous() for name, tensor in out.items()}


def _padded(weight: torch.Tensor, rows: int) -> torch.Tensor:
    pad = weight.new_zeros(rows - weight.shape[0], weight.shape[1])
    return torch.cat([weight, pad], dim=0)


def hf_to_megatron(hf: dict[str, torch.Tensor], model: ModelConfig,
                   padded_vocab: int) -> dict[str, torch.Tensor]:
    """HF Granite/Llama tensors -> a whole (TP1/PP1) megatron local-spec state dict; the
    vocabulary is padded with zero rows to ``padded_vocab``. ``hf`` must hold every tensor
    (see :func:`expected_hf_shapes`)."""
    out = {"embedding.word_embeddings.weight": _padded(hf["model.embed_tokens.weight"], padded_vocab),
           "decoder.final_layernorm.weight": hf["model.norm.weight"]}
    if not model.tie_embeddings:
        out["output_layer.weight"] = _padded(hf["lm_head.weight"], padded_vocab)
    for i in range(model.num_layers):
        src, dst = f"model.layers.{i}.", f"decoder.layers.{i}."
        out[dst + "self_attention.linear_qkv.weight"] = pack_qkv(
            *(hf[f"{src}self_attn.{p}_proj.weight"] for p in "qkv"), model)
        out[dst + "mlp.linear_fc1.weight"] = torch.cat(
            [hf[src + "mlp.gate_proj.weight"], hf[src + "mlp.up_proj.weight"]], dim=0)
        for local, name in _LAYER_NAMES.items():
            out[dst + local] = hf[src + name]
    return out


def expected_hf_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every HF tensor of a model shape and its shape (no ``lm_head`` when tied)."""
    d, f, hd = model.hidden_size, model.ffn_hidden_size, model.head_dim
    shapes = {"model.embed_tokens.weight": (model.vocab_size, d), "model.norm.weight": (d,)}
    if not model.tie_embeddings:
        shapes["lm_head.weight"] = (model.vocab_size, d)
    per_layer = {
        "input_layernorm.weight": (d,),
        "self_attn.q_proj.weight": (model.num_attention_heads * hd, d),
        "self_attn.k_proj.weight": (model.num_query_groups * hd, d),
        "self_attn.v_proj.weight": (model.num_query_groups * hd, d),
        "self_attn.o_proj.weight": (d, model.num_attention_heads * hd),
        "post_attention_layernorm.weight": (d,),
        "mlp.gate_proj.weight": (f, d),
        "mlp.up_proj.weight": (f, d),
        "mlp.down_proj.weight": (d, f),
    }
    for i in range(model.num_layers):
        shapes.update({f"model.layers.{i}.{name}": shape for name, shape in per_layer.items()})
    return shapes


def check_hf_tensors(hf: dict[str, torch.Tensor], model: ModelConfig, where: str) -> None:
    """Every tensor the config implies is there with its shape; nothing unknown is left."""
    expected = expected_hf_shapes(model)
    if model.tie_embeddings and "lm_head.weight" in hf:
        if not torch.equal(hf["lm_head.weight"], hf["model.embed_tokens.weight"]):
            raise ConversionError(f"{where}: config.json has tie_word_embeddings=true but "
                                  "lm_head.weight differs from model.embed_tokens.weight")
        expected["lm_head.weight"] = expected["model.embed_tokens.weight"]
    for name, shape in expected.items():
        if name not in hf:
            raise ConversionError(f"{where}: tensor {name!r} is missing (config.json implies it"
                                  f"{' with tie_word_embeddings=false' if name == 'lm_head.weight' else ''})")
        if tuple(hf[name].shape) != shape:
            raise ConversionError(f"{where}: tensor {name!r} has shape {tuple(hf[name].shape)} but "
                                  f"config.json implies {shape}")
    unknown = sorted(set(hf) - set(expected) - {n for n in hf if n.endswith("rotary_emb.inv_freq")})
    if unknown:
        raise ConversionError(f"{where}: tensor {unknown[0]!r} is not part of a Granite/Llama "
                              f"model of this config ({len(unknown)} unexpected tensors)")
