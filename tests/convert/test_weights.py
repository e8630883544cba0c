"""The tensor mapping: GQA per-group QKV packing, [gate; up], vocabulary padding, TE names."""

import pytest
import torch

from xm2_megatron.config import ModelConfig
from xm2_megatron.convert.weights import (
    hf_to_megatron,
    local_names,
    megatron_to_hf,
    pack_qkv,
    split_qkv,
)

MODEL = ModelConfig(hidden_size=8, ffn_hidden_size=12, num_layers=2, num_attention_heads=4,
                    num_query_groups=2, vocab_size=10, tie_embeddings=False)


def _megatron_state(model=MODEL, rows=16):
    torch.manual_seed(0)
    d, f, hd = model.hidden_size, model.ffn_hidden_size, model.head_dim
    qkv = (model.num_attention_heads + 2 * model.num_query_groups) * hd
    state = {"embedding.word_embeddings.weight": torch.randn(rows, d),
             "decoder.final_layernorm.weight": torch.randn(d),
             "output_layer.weight": torch.randn(rows, d)}
    for i in range(model.num_layers):
        p = f"decoder.layers.{i}."
        state.update({p + "input_layernorm.weight": torch.randn(d),
                      p + "self_attention.linear_qkv.weight": torch.randn(qkv, d),
                      p + "self_attention.linear_proj.weight": torch.randn(d, d),
                      p + "pre_mlp_layernorm.weight": torch.randn(d),
                      p + "mlp.linear_fc1.weight": torch.randn(2 * f, d),
                      p + "mlp.linear_fc2.weight": torch.randn(d, f)})
    return state


def test_qkv_is_packed_per_group():
    """Row r of megatron's qkv is (group, slot, dim): slots 0..1 are the group's q heads, 2 is k, 3 is v."""
    hd, d = MODEL.head_dim, MODEL.hidden_size
    code = torch.tensor([[g * 100 + s * 10 + j for g in range(2) for s in range(4) for j in range(hd)]],
                        dtype=torch.float32).T.expand(-1, d)
    q, k, v = split_qkv(code, MODEL)
    assert q[:, 0].tolist() == [g * 100 + s * 10 + j for g in range(2) for s in range(2) for j in range(hd)]
    assert k[:, 0].tolist() == [g * 100 + 20 + j for g in range(2) for j in range(hd)]
    assert v[:, 0].tolist() == [g * 100 + 30 + j for g in range(2) for j in range(hd)]
    assert torch.equal(pack_qkv(q, k, v, MODEL), code)


def test_round_trip_slices_and_restores_padding():
    state = _megatron_state()
    hf = megatron_to_hf(state, MODEL)
    assert hf["model.embed_tokens.weight"].shape == (10, 8) and hf["lm_head.weight"].shape == (10, 8)
    gate, up = state["decoder.layers.1.mlp.linear_fc1.weight"].chunk(2)
    assert torch.equal(hf["model.layers.1.mlp.gate_proj.weight"], gate)
    assert torch.equal(hf["model.layers.1.mlp.up_proj.weight"], up)
    back = hf_to_megatron(hf, MODEL, 16)
    for name, tensor in back.items():
        if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
            assert torch.equal(tensor[:10], state[name][:10]) and not tensor[10:].any()
        else:
            assert torch.equal(tensor, state[name]), name


def test_tied_model_has_no_lm_head():
    tied = ModelConfig(**{**MODEL.__dict__, "tie_embeddings": True})
    hf = megatron_to_hf(_megatron_state(tied), tied)
    assert "lm_head.weight" not in hf
    assert "output_layer.weight" not in hf_to_megatron(hf, tied, 16)


def test_transformer_engine_names_map_like_local_ones():
    state = _megatron_state()
    te = {}
    for name, tensor in state.items():
        name = name.replace("input_layernorm.weight", "self_attention.linear_qkv.layer_norm_weight")
        name = name.replace("pre_mlp_layernorm.weight", "mlp.linear_fc1.layer_norm_weight")
        te[name] = tensor
        te[name.rsplit(".", 1)[0] + "._extra_state"] = None
    assert "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight" in te
    assert local_names(te).keys() == state.keys()
    ours, theirs = megatron_to_hf(state, MODEL), megatron_to_hf(te, MODEL)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_fc1_halves_are_gate_then_up():
    state = _megatron_state()
    fc1 = state["decoder.layers.0.mlp.linear_fc1.weight"]
    hf = megatron_to_hf(state, MODEL)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(hf["model.layers.0.mlp.gate_proj.weight"], fc1[12:])
