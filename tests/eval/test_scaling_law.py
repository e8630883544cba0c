"""The post-training scaling law: the fit recovers known parameters, and the per-position
losses are the model's held-out loss split by position."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from xm2_megatron.data.tokenizer import Tokenizer
from xm2_megatron.eval.heldout import heldout_windows, hf_loss, hf_position_losses
from xm2_megatron.eval.scaling_law import fit_power_law, power_law, ptb_all_text


def test_the_fit_recovers_the_papers_parameters():
    t = np.arange(1, 4097, dtype=np.float64)
    noise = np.random.default_rng(0).normal(0, 0.002, len(t))
    fit = fit_power_law(power_law(t, -0.575, 1.772, 32.84) + noise)
    assert math.isclose(fit.a, -0.575, abs_tol=0.01)
    assert math.isclose(fit.b, 1.772, abs_tol=0.01)
    assert math.isclose(fit.c, 32.84, rel_tol=0.05)
    assert fit.rmse < 0.003
    with pytest.raises(ValueError, match="too few"):
        fit_power_law(np.ones(3))


def test_position_losses_average_to_the_heldout_loss(eval_export, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(eval_export, dtype=torch.float32)
    text = ptb_all_text(tmp_path / "ptb.txt")
    assert len(text.read_text().split()) > 1_000_000  # train + valid + test
    windows = heldout_windows(text, Tokenizer(eval_export / "tokenizer.model"), 128, 6)
    per_position = hf_position_losses(model, windows, batch_size=4)
    assert per_position.shape == (128,)
    mean, whole = float(per_position.mean()), hf_loss(model, windows, 4)
    assert math.isclose(mean, whole, rel_tol=1e-6), (mean, whole)  # float32 logits, two layouts
    assert float(per_position[0]) != float(per_position[-1])
