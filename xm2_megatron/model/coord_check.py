"""µP coordinate check: activation RMS across widths (and depths) after a few optimizer steps.

Each variant of ``base`` is built and trained with the project's own path (``build_model``
-> ``wrap_with_ddp`` -> ``build_optimizer`` -> ``train_step``) on fixed synthetic batches,
then one fixed batch is run through it and forward hooks record the RMS of

- ``embedding``: the embedding output (after µP's ``scale_emb``),
- ``layer_{i}``: each transformer layer's output (the residual stream), ``last_layer`` too,
- ``logits``: the model's output with ``labels=None`` (unpadded vocabulary).

Under µP these stay bounded as the width grows; under the standard parametrization the
hidden and output coordinates blow up with width. Needs megatron's parallel state
(world size 1), e.g. ``xm2_megatron.runtime.init_runtime(1, 1)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from megatron.core import tensor_parallel

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.data.synthetic import synthetic_batch
from xm2_megatron.model.builder import build_model
from xm2_megatron.training.setup import build_optimizer, wrap_with_ddp
from xm2_megatron.training.step import train_step

Results = dict[int, dict[str, float]]

# Sample index of the measurement batch: far from the training samples.
_MEASURE_INDEX = 10_000_000


def width_config(base: ExperimentConfig, width: int, head_dim: int = 16) -> ExperimentConfig:
    """``base`` at hidden size ``width``: FFN 2.5 x width, ``head_dim`` wide heads, 2 heads per KV group."""
    heads = width // head_dim
    model = dataclasses.replace(
        base.model,
        hidden_size=width,
        ffn_hidden_size=int(2.5 * width),
        num_attention_heads=heads,
        num_query_groups=max(1, heads // 2),
    )
    return dataclasses.replace(base, model=model)


def depth_config(base: ExperimentConfig, num_layers: int) -> ExperimentConfig:
    """``base`` with ``num_layers`` transformer layers."""
    return dataclasses.replace(base, model=dataclasses.replace(base.model, num_layers=num_layers))


def _constant_lr(cfg: ExperimentConfig, steps: int) -> ExperimentConfig:
    """``cfg`` with a constant lr (no warmup, no decay) and a fixed batch size."""
    schedule = dataclasses.replace(cfg.schedule, warmup_steps=0, decay_start=None, decay_style="constant")
    train = dataclasses.replace(cfg.train, steps=max(steps, 1), batch_size_schedule=[])
    return dataclasses.replace(cfg, schedule=schedule, train=train)


def _batches(cfg: ExperimentConfig, step: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """The micro-batches of global batch ``step`` (world size 1)."""
    gbs, mbs, m = cfg.train.global_batch_size, cfg.train.micro_batch_size, cfg.model
    first = step * gbs
    return [
        synthetic_batch(first + i, mbs, m.seq_length, m.vocab_size, cfg.data.seed + seed)
        for i in range(0, gbs, mbs)
    ]


def _rms(tensor: torch.Tensor) -> float:
    return float(tensor.detach().float().pow(2).mean().sqrt())


@torch.no_grad()
def _measure(chunk: torch.nn.Module, batch: dict[str, torch.Tensor], vocab_size: int) -> dict[str, float]:
    """RMS at the embedding, every layer and the logits of one forward pass."""
    rms: dict[str, float] = {}

    def record(name):
        def hook(module, args, output):
            rms[name] = _rms(output[0] if isinstance(output, tuple) else output)

        return hook

    handles = [chunk.embedding.register_forward_hook(record("embedding"))]
    handles += [
        layer.register_forward_hook(record(f"layer_{i}")) for i, layer in enumerate(chunk.decoder.layers)
    ]
    try:
        logits = chunk(batch["tokens"], batch["position_ids"], None, labels=None)
    finally:
        for handle in handles:
            handle.remove()
    rms["last_layer"] = rms[f"layer_{len(chunk.decoder.layers) - 1}"]
    rms["logits"] = _rms(logits[..., :vocab_size])
    return rms


def measure_rms(cfg: ExperimentConfig, steps: int, seeds: Sequence[int] = (0,)) -> dict[str, float]:
    """Per-site RMS of ``cfg``'s model after ``steps`` constant-lr steps, averaged over ``seeds``.

    Each seed reseeds torch and megatron's RNG tracker before the model is built (so equal
    seeds give comparable inits across shapes) and shifts the synthetic data seed.
    """
    cfg = _constant_lr(cfg, steps)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    totals: dict[str, float] = {}
    for seed in seeds:
        torch.manual_seed(seed)
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
        model = wrap_with_ddp(cfg, build_model(cfg))
        optimizer, scheduler = build_optimizer(cfg, model)
        for step in range(steps):
            train_step(model, optimizer, scheduler, _batches(cfg, step, seed))
        batch = synthetic_batch(_MEASURE_INDEX, cfg.train.micro_batch_size, cfg.model.seq_length,
                                cfg.model.vocab_size, cfg.data.seed + seed)
        batch = {key: value.to(device) for key, value in batch.items()}
        for site, value in _measure(model[0].module, batch, cfg.model.vocab_size).items():
            totals[site] = totals.get(site, 0.0) + value / len(seeds)
    return totals


def coordinate_check(base: ExperimentConfig, widths: Sequence[int], steps: int,
                     seeds: Sequence[int] = (0,), head_dim: int = 16) -> Results:
    """``{width: {site: RMS}}``: ``base`` at each width (see :func:`width_config`), all else fixed."""
    return {w: measure_rms(width_config(base, w, head_dim), steps, seeds) for w in widths}


def depth_check(base: ExperimentConfig, depths: Sequence[int], steps: int = 0,
                seeds: Sequence[int] = (0,)) -> Results:
    """``{num_layers: {site: RMS}}``: ``base`` at each depth, all else fixed.

    µP's residual multiplier ``scale_depth / sqrt(L)`` keeps ``last_layer`` roughly flat in L;
    with a multiplier of 1 it grows like sqrt(L).
    """
    return {depth: measure_rms(depth_config(base, depth), steps, seeds) for depth in depths}


def rms_growth(results: Results, site: str) -> float:
    """RMS at ``site`` of the largest key (width or depth) over that of the smallest."""
    return results[max(results)][site] / results[min(results)][site]
