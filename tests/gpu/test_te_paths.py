"""Transformer Engine layer paths on a GPU (skipped without CUDA and TE): TE bf16 against the
local spec bf16 from the same weights, and fp8 training on real text."""

import json
import os

import pytest
import torch
from megatron.core.utils import unwrap_model

from tests.conftest import REPO
from xm2_megatron.config import load_config
from xm2_megatron.model import build_model
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.step import train_step

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("megatron_runtime")]
ENGLISH = os.path.join(REPO, "data", "demo", "english.jsonl")

# head_dim 64, widths that fp8 GEMMs accept (multiples of 16), µP on (width_mult 2).
SHAPE = ["model.hidden_size=256", "model.ffn_hidden_size=640", "model.num_layers=4",
         "model.num_attention_heads=4", "model.num_query_groups=2", "mup.dim_model_base=128",
         "schedule.warmup_steps=5", "train.micro_batch_size=4", "train.global_batch_size=8"]


@pytest.fixture(autouse=True)
def _needs_te():
    pytest.importorskip("transformer_engine.pytorch")


def _config(*overrides):
    return load_config(os.path.join(REPO, "tests", "distributed", "parity.yaml"), [*SHAPE, *overrides])


def _copy_weights(src, dst):
    """Copy by megatron's sharded-state-dict keys, which the TE and local specs share (the
    local norms map onto TE's fused layer-norm linears)."""
    src_sd, dst_sd = src.sharded_state_dict(), dst.sharded_state_dict()
    copied = 0
    for key, sharded in dst_sd.items():
        if hasattr(sharded, "data") and isinstance(sharded.data, torch.Tensor) \
                and "_extra_state" not in key:
            sharded.data.detach().copy_(src_sd[key].data)
            copied += 1
    return copied


def _batches(cfg, step, vocab, data=None):
    """Four micro-batches of two sequences: synthetic tokens, or windows of ``data`` bytes."""
    seq = cfg.model.seq_length
    out = []
    for i in range(4):
        if data is None:
            from xm2_megatron.data.synthetic import synthetic_batch
            batch = synthetic_batch(step * 8 + 2 * i, 2, seq, vocab, seed=7)
        else:
            starts = [(step * 8 + 2 * i + j) * (seq + 1) for j in range(2)]
            rows = torch.stack([data[s:s + seq + 1] for s in starts]).long()
            batch = {"tokens": rows[:, :-1], "labels": rows[:, 1:],
                     "loss_mask": torch.ones(2, seq),
                     "position_ids": torch.arange(seq).expand(2, -1).contiguous()}
        out.append({k: v.cuda() for k, v in batch.items()})
    return out


def _train(cfg, steps, data=None, weights_from=None):
    model, optimizer, scheduler = build_training_state(cfg)
    chunk = unwrap_model(model)[0]
    if weights_from is not None:
        assert _copy_weights(weights_from, chunk) >= 1 + 4 * cfg.model.num_layers
        optimizer.reload_model_params()  # bf16: the fp32 main weights are copies
    losses = [train_step(model, optimizer, scheduler,
                         _batches(cfg, s, cfg.model.vocab_size, data)).loss for s in range(steps)]
    return chunk, losses


def test_te_bf16_matches_local_bf16_from_the_same_weights():
    local_cfg = _config("train.precision=bf16", "model.transformer_impl=local")
    te_cfg = _config("train.precision=bf16", "model.transformer_impl=transformer_engine")
    reference = build_model(local_cfg)[0]
    _, local_losses = _train(local_cfg, 5, weights_from=reference)
    _, te_losses = _train(te_cfg, 5, weights_from=reference)
    assert te_losses == pytest.approx(local_losses, rel=2e-2)
    assert te_losses[0] == pytest.approx(local_losses[0], rel=5e-3)


def _english_bytes(limit=4_000_000):
    if not os.path.exists(ENGLISH):
        pytest.skip(f"{ENGLISH} is missing: run bash scripts/fetch_demo_data.sh")
    text, size = [], 0
    with open(ENGLISH) as f:
        for line in f:
            text.append(json.loads(line)["text"])
            size += len(text[-1])
            if size > limit:
                break
    return torch.frombuffer(bytearray("\n".join(text).encode()), dtype=torch.uint8)


@pytest.mark.parametrize("recipe", ["delayed", "tensorwise"])
def test_fp8_trains_without_divergence_on_real_text(recipe):
    """50 steps on UTF-8 bytes of English text (vocabulary 256): every loss finite, the loss
    falls, and the last ten steps stay within 5% of the same run in bf16."""
    data = _english_bytes()
    common = ["model.transformer_impl=transformer_engine", "model.vocab_size=256",
              "model.seq_length=256"]
    _, bf16 = _train(_config(*common, "train.precision=bf16"), 50, data)
    _, fp8 = _train(_config(*common, "train.precision=fp8", f"train.fp8_recipe={recipe}"), 50, data)
    assert all(torch.isfinite(torch.tensor(fp8)))
    tail_fp8, tail_bf16 = sum(fp8[-10:]) / 10, sum(bf16[-10:]) / 10
    assert tail_fp8 < fp8[0] - 2.0
    assert tail_fp8 == pytest.approx(tail_bf16, rel=0.05)
