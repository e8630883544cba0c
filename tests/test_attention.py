"""The SDPA core attention against megatron's DotProductAttention, the layer-path settings
(local attention, fp8 recipe) and bf16 training through Float16Module, on CPU."""

import types

import pytest
import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import Float16Module

from tests.conftest import REPO
from xm2_megatron.config import ConfigError, ModelConfig, load_config
from xm2_megatron.data.synthetic import synthetic_batch
from xm2_megatron.model import build_model, build_transformer_config
from xm2_megatron.model.attention import SDPAttention
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.step import train_step

pytestmark = pytest.mark.usefixtures("megatron_runtime")

PARITY = f"{REPO}/tests/distributed/parity.yaml"
STEPS = 8


class _Group:
    """A stand-in tensor-parallel group: both modules only ask for its size."""

    def __init__(self, size: int):
        self._size = size

    def size(self) -> int:
        return self._size


def _pair(heads, groups, head_dim, tp=1, softmax_scale=None, mask_type=AttnMaskType.causal):
    config = TransformerConfig(
        num_layers=2, hidden_size=heads * head_dim, num_attention_heads=heads,
        num_query_groups=groups, kv_channels=head_dim, attention_dropout=0.0,
        masked_softmax_fusion=False, use_cpu_initialization=True, softmax_scale=softmax_scale)
    pgs = types.SimpleNamespace(tp=_Group(tp))
    args = (config, 2, mask_type, "self")
    kwargs = {"softmax_scale": softmax_scale, "pg_collection": pgs}
    return DotProductAttention(*args, **kwargs), SDPAttention(*args, **kwargs)


def _qkv(sq, b, heads, groups, head_dim, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(sq, b, heads, head_dim, generator=gen, requires_grad=True)
    k = torch.randn(sq, b, groups, head_dim, generator=gen, requires_grad=True)
    v = torch.randn(sq, b, groups, head_dim, generator=gen, requires_grad=True)
    return q, k, v


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _run(module, q, k, v, mask=None):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = module(q, k, v, mask)
    out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).reshape(out.shape))
    return out, q.grad, k.grad, v.grad


# (sq, b, heads, groups, head_dim, tp, softmax_scale, mask type); heads and groups are the
# model's, tp splits them: the modules see heads/tp query heads and groups/tp KV heads.
SHAPES = [
    (32, 2, 4, 2, 16, 1, None, AttnMaskType.causal),
    (64, 3, 8, 2, 32, 1, 1 / 32, AttnMaskType.causal),  # µP's 1/head_dim
    (17, 1, 6, 6, 8, 1, None, AttnMaskType.causal),  # MHA, odd length
    (128, 2, 24, 8, 64, 1, None, AttnMaskType.causal),  # the 1.2B model's heads
    (128, 2, 24, 8, 64, 2, None, AttnMaskType.causal),  # its TP2 partition: 12 / 4 heads
    (48, 2, 8, 4, 16, 4, 0.3, AttnMaskType.causal),  # TP4: 2 / 1 heads
    (40, 2, 4, 2, 16, 1, None, AttnMaskType.no_mask),
]


@pytest.mark.parametrize("sq,b,heads,groups,head_dim,tp,scale,mask_type", SHAPES)
def test_matches_dot_product_attention(sq, b, heads, groups, head_dim, tp, scale, mask_type):
    ref, sdpa = _pair(heads, groups, head_dim, tp, scale, mask_type)
    assert sdpa.softmax_scale == pytest.approx(ref.softmax_scale)
    q, k, v = _qkv(sq, b, heads // tp, groups // tp, head_dim)
    want, got = _run(ref, q, k, v), _run(sdpa, q, k, v)
    assert got[0].shape == (sq, b, heads // tp * head_dim)
    for name, w, g in zip(("output", "dq", "dk", "dv"), want, got):
        assert _rel(g, w) < 1e-5, name


def test_causal_mask_is_applied():
    """Changing the last key and value changes only the last query's output."""
    _, sdpa = _pair(4, 2, 16)
    q, k, v = _qkv(16, 1, 4, 2, 16)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[-1] += 1.0
    v2[-1] += 1.0
    a, b = sdpa(q, k, v, None), sdpa(q, k2, v2, None)
    assert torch.equal(a[:-1], b[:-1])
    assert (a[-1] - b[-1]).abs().max() > 1e-3


def test_explicit_boolean_mask_matches():
    """A given mask (True = masked out) replaces the causal one, as in DotProductAttention."""
    ref, sdpa = _pair(4, 2, 16)
    q, k, v = _qkv(24, 2, 4, 2, 16)
    mask = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(3)) < 0.4
    mask &= ~torch.eye(24, dtype=torch.bool)  # no row masked entirely
    for name, w, g in zip(("output", "dq", "dk", "dv"), _run(ref, q, k, v, mask),
                          _run(sdpa, q, k, v, mask)):
        assert _rel(g, w) < 1e-5, name


def test_rejects_what_it_cannot_do():
    config = TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4,
                               attention_dropout=0.1, use_cpu_initialization=True)
    with pytest.raises(ValueError, match="attention_dropout=0.1"):
        SDPAttention(config, 1, AttnMaskType.causal, "self")
    with pytest.raises(ValueError, match="attn_mask_type=padding"):
        SDPAttention(config, 1, AttnMaskType.padding, "self", attention_dropout=0.0)
    _, sdpa = _pair(4, 2, 16)
    q, k, v = _qkv(8, 1, 4, 2, 16)
    with pytest.raises(ValueError, match="attention_bias"):
        sdpa(q, k, v, None, attention_bias=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="packed"):
        sdpa(q, k, v, None, packed_seq_params=PackedSeqParams(qkv_format="thd"))
    with pytest.raises(ValueError, match="8 queries and 4 keys"):
        sdpa(q, k[:4], v[:4], None)
    with pytest.raises(ValueError, match="must be bool"):
        sdpa(q, k, v, torch.zeros(1, 1, 8, 8))


def _train(cfg, steps):
    model, optimizer, scheduler = build_training_state(cfg)
    losses = []
    for step in range(steps):
        batches = [synthetic_batch(step * 8 + 2 * i, 2, cfg.model.seq_length, cfg.model.vocab_size,
                                   seed=7) for i in range(4)]
        losses.append(train_step(model, optimizer, scheduler, batches).loss)
    return model, losses


def _config(*overrides):
    """The tiny parity model (4 layers, d 64, 4/2 heads, µP on), constant lr."""
    return load_config(PARITY, ["schedule.warmup_steps=0", *overrides])


@pytest.fixture(scope="module")
def fp32_losses(megatron_runtime):
    """STEPS steps with megatron's DotProductAttention, fp32: the reference."""
    model, losses = _train(_config("model.local_attention=megatron"), STEPS)
    core = model[0].module.decoder.layers[0].self_attention.core_attention
    assert type(core) is DotProductAttention
    return losses


def test_sdpa_model_trains_to_the_same_losses(fp32_losses):
    assert ModelConfig().local_attention == "sdpa"  # the default (the CPU recipes pick megatron)
    cfg = _config("model.local_attention=sdpa")
    model, losses = _train(cfg, STEPS)
    core = model[0].module.decoder.layers[0].self_attention.core_attention
    assert type(core) is SDPAttention
    assert losses[-1] < losses[0] - 0.3  # it learns
    assert losses == pytest.approx(fp32_losses, rel=1e-5)


def test_bf16_trains_in_float16_module(fp32_losses):
    """bf16: every parameter (the local spec's torch norms too) in bf16 inside megatron's
    Float16Module, the µP hooks still firing: losses within bf16 rounding of fp32."""
    cfg = _config("train.precision=bf16", "model.local_attention=sdpa")
    model, losses = _train(cfg, STEPS)
    assert isinstance(model[0].module, Float16Module)
    assert {p.dtype for p in model[0].module.parameters()} == {torch.bfloat16}
    assert losses == pytest.approx(fp32_losses, rel=2e-3)


@pytest.mark.parametrize("recipe,history", [("delayed", 1024), ("tensorwise", 1)])
def test_fp8_recipe_reaches_transformer_config(tiny_config, recipe, history):
    cfg = tiny_config("train.precision=fp8", f"train.fp8_recipe={recipe}",
                      "model.transformer_impl=transformer_engine")
    config = build_transformer_config(cfg)
    assert (config.fp8, config.fp8_recipe, config.fp8_amax_history_len) == ("hybrid", recipe, history)


@pytest.mark.parametrize("override,message", [
    ("model.local_attention=flash", "model.local_attention='flash' is not allowed: must be one of sdpa, megatron"),
    ("train.fp8_recipe=mxfp8", "train.fp8_recipe='mxfp8' is not allowed: must be one of delayed, tensorwise"),
])
def test_config_rejects_unknown_choices(tiny_config, override, message):
    with pytest.raises(ConfigError) as err:
        tiny_config(override)
    assert str(err.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path without a GPU")
def test_fp8_without_transformer_engine_is_a_config_error(tiny_config):
    cfg = tiny_config("train.precision=fp8", "model.transformer_impl=auto")
    with pytest.raises(ConfigError, match="needs Transformer Engine"):
        build_model(cfg)
