"""GraniteConfig <-> the recipe's model and µP sections, and the architecture checks."""

import math
import os
import re
from types import SimpleNamespace

import pytest

from xm2_megatron.config import load_config
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.convert.granite import granite_config, model_fields, mup_fields

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _paper():
    return load_config(os.path.join(REPO, "recipes", "xmodel2_1p2b.yaml"))


def test_paper_multipliers():
    cfg = _paper()
    g = granite_config(cfg.model, cfg.mup)
    assert g.embedding_multiplier == 12.0
    assert math.isclose(g.residual_multiplier, 1.4 / math.sqrt(48), rel_tol=1e-15)
    assert g.logits_scaling == 6.0  # a divisor: 1536 / 256
    assert g.attention_multiplier == 0.125  # 1/sqrt(64)
    assert g.tie_word_embeddings and g.vocab_size == 65280 and g.num_key_value_heads == 8
    assert g.rope_parameters["rope_theta"] == 10000.0 and g.intermediate_size == 3840


def test_standard_parametrization_exports_ones():
    cfg = load_config(os.path.join(REPO, "recipes", "xmodel2_1p2b.yaml"), ["mup.enabled=false"])
    g = granite_config(cfg.model, cfg.mup)
    assert (g.embedding_multiplier, g.residual_multiplier, g.logits_scaling) == (1.0, 1.0, 1.0)
    assert g.attention_multiplier == 0.125
    linear = load_config(os.path.join(REPO, "recipes", "xmodel2_1p2b.yaml"), ["mup.attention_scale=linear"])
    assert granite_config(linear.model, linear.mup).attention_multiplier == 1 / 64


@pytest.mark.parametrize("overrides", [[], ["mup.enabled=false"], ["mup.attention_scale=linear"]])
def test_config_round_trip(overrides):
    cfg = load_config(os.path.join(REPO, "recipes", "xmodel2_1p2b.yaml"), overrides)
    g = granite_config(cfg.model, cfg.mup)
    model = model_fields(g, "config.json")
    assert {k: getattr(cfg.model, k) for k in model} == model
    mup = mup_fields(g, model, "config.json")
    assert mup["enabled"] == cfg.mup.enabled and mup["attention_scale"] == cfg.mup.attention_scale
    if cfg.mup.enabled:
        assert (mup["scale_emb"], mup["dim_model_base"], mup["scale_depth"]) == (12.0, 256, 1.4)


def _hf(**changes):
    cfg = _paper()
    return SimpleNamespace(**{**granite_config(cfg.model, cfg.mup).to_dict(), **changes})


@pytest.mark.parametrize("changes, expected", [
    ({"model_type": "gpt2"}, "model_type='gpt2' is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"mlp_bias": True}, "mlp_bias=True"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope_type='llama3'"),
    ({"head_dim": 128}, "head_dim=128"),
])
def test_unsupported_architecture(changes, expected):
    with pytest.raises(ConversionError, match=r"^hf/config\.json: .*" + re.escape(expected)):
        model_fields(_hf(**changes), "hf/config.json")


@pytest.mark.parametrize("changes, expected", [
    ({"attention_multiplier": 0.3}, "attention_multiplier=0.3"),
    ({"logits_scaling": 7.0}, "logits_scaling=7.0"),
])
def test_unsupported_multipliers(changes, expected):
    hf = _hf(**changes)
    with pytest.raises(ConversionError, match=expected):
        mup_fields(hf, model_fields(hf, "x"), "hf/config.json")
