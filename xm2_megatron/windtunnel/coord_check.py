"""µP coordinate check: activation RMS across widths (or depths) after a few optimizer steps.

Each variant of ``base`` is built and trained on the trainer's own path
(``build_training_state`` -> ``train_step``) at a constant lr on fixed synthetic batches; then one fixed batch goes through it and forward hooks record the RMS of

- ``embedding``: the embedding output (after µP's ``scale_emb``),
- ``layer_{i}``: each transformer layer's output (the residual stream); ``last_layer`` as well,
- ``logits``: the model's output with ``labels=None`` (the unpadded vocabulary).

Under µP the hidden and output coordinates stay bounded as the width grows; under the
standard parametrization they blow up. Needs megatron's parallel state at world size 1
(``xm2_megatron.runtime.init_runtime(1, 1)``). Reseeds torch and megatron's RNG tracker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from megatron.core import tensor_parallel

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.data.synthetic import rank_microbatches, synthetic_batch
from xm2_megatron.training.state import build_training_state
from xm2_megatron.training.step import train_step
from xm2_megatron.windtunnel.family import depth_config, width_config

Results = dict[int, dict[str, float]]

_MEASURE_INDEX = 10_000_000  # sample index of the measurement batch, far from training samples


def _constant_lr(cfg: ExperimentConfig, steps: int) -> ExperimentConfig:
    """``cfg`` with a constant lr (no warmup, no decay) and a fixed batch size, validated."""
    schedule = dataclasses.replace(
        cfg.schedule, warmup_steps=0, decay_start=None, decay_style="constant"
    )
    train = dataclasses.replace(cfg.train, steps=max(steps, 1), batch_size_schedule=[])
    return dataclasses.replace(cfg, schedule=schedule, train=train).validate(world_size=1)


def _rms(tensor: torch.Tensor) -> float:
    return float(tensor.detach().float().pow(2).mean().sqrt())


@torch.no_grad()
def _measure(chunk: torch.nn.Module, batch: dict, vocab_size: int) -> dict[str, float]:
    """RMS at the embedding, every layer and the logits of one forward pass of ``chunk``."""
    rms: dict[str, float] = {}

    def record(name):
        def hook(module, args, output):
            rms[name] = _rms(output[0] if isinstance(output, tuple) else output)

        return hook

    layers = chunk.decoder.layers
    handles = [chunk.embedding.register_forward_hook(record("embedding"))]
    handles += [layer.register_forward_hook(record(f"layer_{i}")) for i, layer in enumerate(layers)]
    try:
        logits = chunk(batch["tokens"], batch["position_ids"], None, labels=None)
    finally:
        for handle in handles:
            handle.remove()
    rms["last_layer"] = rms[f"layer_{len(layers) - 1}"]
    rms["logits"] = _rms(logits[..., :vocab_size])
    return rms


def measure_rms(cfg: ExperimentConfig, steps: int, seeds: Sequence[int] = (0,)) -> dict[str, float]:
    """Per-site RMS of ``cfg``'s model after ``steps`` constant-lr steps, averaged over ``seeds``.

    Seed ``s`` builds the model with ``train.seed = s`` (after reseeding torch and megatron's
    RNG tracker with it), so equal seeds give comparable inits across shapes, and offsets
    the synthetic data seed by ``s``.
    """
    cfg = _constant_lr(cfg, steps)
    gbs, mbs, m = cfg.train.global_batch_size, cfg.train.micro_batch_size, cfg.model
    device = "cuda" if torch.cuda.is_available() else "cpu"
    totals: dict[str, float] = {}
    for seed in seeds:
        run = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        data_seed = cfg.data.seed + seed
        torch.manual_seed(seed)
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
        state = build_training_state(run)
        for step in range(steps):
            batches = rank_microbatches(step * gbs, gbs, mbs, 0, 1, m.seq_length, m.vocab_size,
                                        data_seed)
            train_step(state.model, state.optimizer, state.scheduler, batches)
        batch = synthetic_batch(_MEASURE_INDEX, mbs, m.seq_length, m.vocab_size, data_seed)
        batch = {key: value.to(device) for key, value in batch.items()}
        for site, value in _measure(state.model[0].module, batch, m.vocab_size).items():
            totals[site] = totals.get(site, 0.0) + value / len(seeds)
    return totals


def coordinate_check(base: ExperimentConfig, widths: Sequence[int], steps: int,
                     seeds: Sequence[int] = (0,), head_dim: int = 16) -> Results:
    """``{width: {site: RMS}}`` of ``base`` at each width (:func:`width_config`), all else fixed."""
    return {w: measure_rms(width_config(base, w, head_dim), steps, seeds) for w in widths}


def depth_check(base: ExperimentConfig, depths: Sequence[int], steps: int = 0,
                seeds: Sequence[int] = (0,)) -> Results:
    """``{num_layers: {site: RMS}}`` of ``base`` at each depth, all else fixed.

    At init, µP's residual multiplier ``scale_depth / sqrt(L)`` keeps ``last_layer`` flat in L;
    a multiplier of 1 lets it grow like sqrt(L). After training it grows either way.
    """
    return {depth: measure_rms(depth_config(base, depth), steps, seeds) for depth in depths}


def rms_growth(results: Results, site: str) -> float:
    """RMS at ``site`` for the largest key (width or depth) over that for the smallest."""
    return results[max(results)][site] / results[min(results)][site]
