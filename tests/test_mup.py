"""Each µP operation, checked numerically on a small megatron model (world size 1)."""

import math

import pytest
import torch

from xm2_megatron.data.synthetic import synthetic_batch
from xm2_megatron.model import build_model, mup_multipliers
from xm2_megatron.model.mup import scaled_bias_dropout_add
from xm2_megatron.training.state import build_training_state

pytestmark = pytest.mark.usefixtures("megatron_runtime")

# Wide enough for per-tensor init statistics; width_mult = 256 / 32 = 8.
WIDE = ("model.hidden_size=256", "model.ffn_hidden_size=640", "model.num_attention_heads=8",
        "model.num_query_groups=4")


def _batch(cfg, index=0, size=2):
    return synthetic_batch(index, size, cfg.model.seq_length, cfg.model.vocab_size, seed=7)


def test_multipliers_follow_the_paper():
    from xm2_megatron.config import load_config

    cfg = load_config("recipes/xmodel2_1p2b.yaml")
    mult = mup_multipliers(cfg.model, cfg.mup)
    assert mult.width_mult == 6.0
    assert mult.embedding == 12.0
    assert mult.residual == pytest.approx(1.4 / math.sqrt(48))
    assert mult.residual == pytest.approx(0.2020726, abs=1e-7)
    assert mult.hidden_init_std == pytest.approx(0.1 / math.sqrt(6))
    assert mult.embedding_init_std == 0.1
    assert mult.hidden_lr == pytest.approx(1 / 6)
    assert mult.logits == pytest.approx(1 / 6)
    assert mult.softmax_scale is None  # megatron's 1/sqrt(head_dim)


def test_multipliers_are_one_without_mup(tiny_config):
    cfg = tiny_config("mup.enabled=false", "mup.init_std=0.02")
    mult = mup_multipliers(cfg.model, cfg.mup)
    assert (mult.width_mult, mult.embedding, mult.residual, mult.hidden_lr, mult.logits) == (
        1.0, 1.0, 1.0, 1.0, 1.0)
    assert mult.hidden_init_std == mult.embedding_init_std == 0.02


@pytest.mark.parametrize("enabled", [True, False])
def test_embedding_output_is_scaled_table_row(tiny_config, enabled):
    cfg = tiny_config(f"mup.enabled={str(enabled).lower()}")
    model = build_model(cfg)[0]
    batch = _batch(cfg)
    out = model.embedding(input_ids=batch["tokens"], position_ids=batch["position_ids"])
    table = model.embedding.word_embeddings.weight
    expected = table[batch["tokens"]].transpose(0, 1) * (cfg.mup.scale_emb if enabled else 1.0)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_scaled_bias_dropout_add_scales_the_branch_only():
    x, residual = torch.randn(5, 2, 8), torch.randn(5, 2, 8)
    bias = torch.randn(8)
    out = scaled_bias_dropout_add(0.25)(False, False)((x, bias), residual, 0.0)
    torch.testing.assert_close(out, residual + 0.25 * (x + bias))


@pytest.mark.parametrize("enabled", [True, False])
def test_residual_branches_are_scaled_inside_the_model(tiny_config, enabled):
    """h1 = x + r * attn(x) and h2 = h1 + r * mlp(h1), with r = scale_depth / sqrt(L)."""
    cfg = tiny_config(f"mup.enabled={str(enabled).lower()}")
    model = build_model(cfg)[0]
    layer = model.decoder.layers[1]
    seen = {}
    layer.register_forward_hook(lambda m, a, kw, out: seen.update(x=kw.get("hidden_states", a[0] if a else None), out=out), with_kwargs=True)
    layer.self_attention.register_forward_hook(lambda m, a, out: seen.update(attn=out[0]))
    layer.pre_mlp_layernorm.register_forward_hook(lambda m, a, out: seen.update(h1=a[0]))
    layer.mlp.register_forward_hook(lambda m, a, out: seen.update(mlp=out[0]))
    batch = _batch(cfg)
    with torch.no_grad():
        model(batch["tokens"], batch["position_ids"], None)
    r = cfg.mup.scale_depth / math.sqrt(cfg.model.num_layers) if enabled else 1.0
    out = seen["out"][0] if isinstance(seen["out"], tuple) else seen["out"]
    torch.testing.assert_close(seen["h1"], seen["x"] + r * seen["attn"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, seen["h1"] + r * seen["mlp"], rtol=1e-6, atol=1e-6)


def test_init_std_per_tensor(tiny_config):
    cfg = tiny_config(*WIDE)
    mult = mup_multipliers(cfg.model, cfg.mup)
    assert mult.width_mult == 8.0
    model = build_model(cfg)[0]
    checked = 0
    for name, param in model.named_parameters():
        if param.dim() == 1:
            assert torch.all(param == 1.0), name  # norm weights start at 1
            continue
        target = mult.embedding_init_std if "word_embeddings" in name else mult.hidden_init_std
        std = param.detach().std().item()
        assert abs(std / target - 1) < 0.03, (name, std, target)
        checked += 1
    assert checked == 1 + 4 * cfg.model.num_layers  # embedding + qkv/proj/fc1/fc2 per layer


def test_logits_are_scaled_by_inverse_width_mult(tiny_config):
    cfg = tiny_config()
    mult = mup_multipliers(cfg.model, cfg.mup)
    model = build_model(cfg)[0]
    seen = {}
    model.decoder.final_layernorm.register_forward_hook(lambda m, a, out: seen.update(h=out))
    batch = _batch(cfg)
    with torch.no_grad():
        logits = model(batch["tokens"], batch["position_ids"], None)
    table = model.embedding.word_embeddings.weight
    expected = (seen["h"] @ table.T).transpose(0, 1) * mult.logits
    assert mult.logits == 0.5
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("enabled", [True, False])
def test_learning_rate_multipliers_per_parameter(tiny_config, enabled):
    cfg = tiny_config(*WIDE, f"mup.enabled={str(enabled).lower()}", "schedule.warmup_steps=0",
                      "optimizer.use_distributed_optimizer=false")
    model, optimizer, scheduler = build_training_state(cfg)
    hidden_lr = cfg.optimizer.lr / 8 if enabled else cfg.optimizer.lr
    names = {id(p): n for n, p in model[0].module.named_parameters()}
    seen = set()
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            seen.add(name)
            hidden = param.dim() == 2 and "word_embeddings" not in name
            assert group["lr"] == pytest.approx(hidden_lr if hidden else cfg.optimizer.lr), name
            assert group["wd_mult"] == (0.0 if param.dim() == 1 else 1.0), name
    assert seen == set(names.values())
    # The multiplier is what the step applies: one step of an lr-scaled group moves a
    # hidden weight by about lr/width_mult (Adam's first step is lr * sign(grad)).
    param = model[0].module.decoder.layers[0].mlp.linear_fc2.weight
    before = param.detach().clone()
    cfg_batches = [_batch(cfg, i * 2) for i in range(4)]
    from xm2_megatron.training.step import train_step

    train_step(model, optimizer, scheduler, cfg_batches)
    step = (param.detach() - before).abs()
    decayed = before.abs() * hidden_lr * cfg.optimizer.weight_decay
    assert (step - decayed).max().item() == pytest.approx(hidden_lr, rel=1e-3)
