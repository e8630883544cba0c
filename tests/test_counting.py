"""Parameter and FLOP counts from the config, against the paper and a built model."""

import pytest

from xm2_megatron.config import load_config
from xm2_megatron.model import build_model, count_parameters, padded_vocab_size, training_flops_per_token


def test_paper_model_parameters_and_flops():
    model = load_config("recipes/xmodel2_1p2b.yaml").model
    count = count_parameters(model)
    assert count.per_layer == 23_989_248
    assert count.embedding == 65_280 * 1536 == 100_270_080
    assert count.total == 1_251_755_520
    assert round(training_flops_per_token(model) / 1e9, 2) == 11.13


def test_untied_adds_the_output_layer():
    model = load_config("recipes/xmodel2_1p2b.yaml", ["model.tie_embeddings=false"]).model
    assert count_parameters(model).total == 1_251_755_520 + 100_270_080


@pytest.mark.parametrize("recipe", ["nano_6m", "tiny_54m"])
def test_wind_tunnel_sizes(recipe):
    total = count_parameters(load_config(f"recipes/{recipe}.yaml").model).total
    target = {"nano_6m": 6e6, "tiny_54m": 54e6}[recipe]
    assert abs(total / target - 1) < 0.05


@pytest.mark.parametrize("tied", ["true", "false"])
def test_built_model_matches_formula(megatron_runtime, tiny_config, tied):
    cfg = tiny_config(f"model.tie_embeddings={tied}", "model.vocab_size=1024")
    model = build_model(cfg)[0]
    built = sum(p.numel() for p in model.parameters())
    assert built == count_parameters(cfg.model).total


def test_nano_recipe_built_matches_formula(megatron_runtime):
    cfg = load_config("recipes/nano_6m.yaml", ["train.precision=fp32", "model.transformer_impl=local"])
    model = build_model(cfg)[0]
    assert sum(p.numel() for p in model.parameters()) == count_parameters(cfg.model).total


@pytest.mark.parametrize("vocab, divisible_by, tp, rows", [
    (65280, 128, 1, 65280), (65280, 128, 4, 65280), (65280, 128, 8, 65280),  # Megatron-LM: 65,536 at TP4
    (4000, 128, 2, 4096), (8000, 8, 2, 8000), (1001, 1, 2, 1002), (100, 6, 4, 108),
])
def test_vocab_padding_does_not_depend_on_tp(vocab, divisible_by, tp, rows):
    assert padded_vocab_size(vocab, divisible_by, tp) == rows
