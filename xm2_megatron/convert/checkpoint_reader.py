"""Read a trainer checkpoint for export: find it, its config, and its weights at TP1/PP1.

The torch_dist format stores every tensor whole (TP/PP independent), so the model is built
in this one process at TP1/PP1 from the checkpoint's own config and megatron reshards on
load. Checkpoints saved with the Transformer Engine spec (GPU) store the same tensor names as
the local spec (megatron maps the local names to TE's when saving), so they load here too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from megatron.core import dist_checkpointing
from torch.distributed.checkpoint.api import CheckpointException

from xm2_megatron.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.training.checkpoint import CONFIG_FILE, find_checkpoint, read_checkpoint_config

EMBEDDING = "embedding.word_embeddings.weight"
OUTPUT = "output_layer.weight"


def find_step(path: str | Path) -> Path:
    """The complete step folder under ``path`` (``latest``, else the newest complete one)."""
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"checkpoint {path} does not exist")
    step = find_checkpoint(path)
    if step is None:
        raise ConversionError(f"{path} holds no complete checkpoint (a step folder iter_NNNNNNN "
                              "with metadata.json, common.pt and rng.pt)")
    return step


def checkpoint_config(step: Path) -> ExperimentConfig:
    """The experiment config a checkpoint was saved with."""
    where = step / CONFIG_FILE
    try:
        data = read_checkpoint_config(step)
    except FileNotFoundError:
        raise ConversionError(f"{where} is missing: the checkpoint is incomplete") from None
    except Exception as e:  # YAML errors and unreadable files alike
        raise ConversionError(f"{where} cannot be read: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{where} must hold a mapping (the resolved config)")
    try:
        return config_from_dict(data, source=f"in {where}")
    except ConfigError as e:
        raise ConversionError(str(e)) from None


def stored_shapes(step: Path) -> dict[str, tuple[int, ...]]:
    """Global shapes of the model tensors in a checkpoint (the optimizer's are left out)."""
    try:
        metadata = dist_checkpointing.load_tensors_metadata(str(step))
    except Exception as e:
        raise ConversionError(f"{step}: cannot read the tensor metadata ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]})") from None
    return {name: tuple(t.global_shape) for name, t in metadata.items()
            if not name.startswith("optimizer.") and hasattr(t, "global_shape")}


def expected_shapes(cfg: ExperimentConfig, vocab_rows: int) -> dict[str, tuple[int, ...]]:
    """What a checkpoint of ``cfg`` stores (layers stacked on dim 0), vocab padded to ``vocab_rows``."""
    m = cfg.model
    d, f, layers, hd = m.hidden_size, m.ffn_hidden_size, m.num_layers, m.head_dim
    qkv_rows = (m.num_attention_heads + 2 * m.num_query_groups) * hd
    shapes = {
        EMBEDDING: (vocab_rows, d),
        "decoder.layers.self_attention.linear_qkv.layer_norm_weight": (layers, d),
        "decoder.layers.self_attention.linear_qkv.weight": (layers, qkv_rows, d),
        "decoder.layers.self_attention.linear_proj.weight": (layers, d, m.num_attention_heads * hd),
        "decoder.layers.mlp.linear_fc1.layer_norm_weight": (layers, d),
        "decoder.layers.mlp.linear_fc1.weight": (layers, 2 * f, d),
        "decoder.layers.mlp.linear_fc2.weight": (layers, d, f),
        "decoder.final_layernorm.weight": (d,),
    }
    if not m.tie_embeddings:
        shapes[OUTPUT] = (vocab_rows, d)
    return shapes


def check_shapes(step: Path, cfg: ExperimentConfig, stored: dict[str, tuple[int, ...]]) -> int:
    """Every tensor the config implies is stored with its shape; returns the padded vocab rows."""
    if EMBEDDING not in stored:
        raise ConversionError(f"{step}: weight {EMBEDDING!r} is missing: not a complete "
                              "xm2-megatron GPT checkpoint")
    rows = stored[EMBEDDING][0]
    if rows < cfg.model.vocab_size:
        raise ConversionError(f"{step}: weight {EMBEDDING!r} has {rows} rows, fewer than "
                              f"model.vocab_size={cfg.model.vocab_size} in {CONFIG_FILE}")
    for name, shape in expected_shapes(cfg, rows).items():
        if name not in stored:
            hint = " (config.yaml has model.tie_embeddings=false)" if name == OUTPUT else ""
            raise ConversionError(f"{step}: weight {name!r} is missing{hint}")
        if stored[name] != shape:
            raise ConversionError(f"{step}: weight {name!r} has shape {stored[name]} but "
                                  f"{CONFIG_FILE} (model.*) implies {shape}")
    return rows


def export_build_config(cfg: ExperimentConfig, vocab_rows: int, precision: str) -> ExperimentConfig:
    """``cfg`` at TP1/PP1 with local layers, ``precision`` params, and a vocabulary padded to
    exactly the stored rows (``make_vocab_size_divisible_by`` = rows: one multiple at TP1)."""
    data = apply_overrides(config_to_dict(cfg), [
        "parallel.tensor_parallel=1", "parallel.pipeline_parallel=1",
        "parallel.sequence_parallel=false", "model.transformer_impl=local",
        f"model.make_vocab_size_divisible_by={vocab_rows}", f"train.precision={precision}",
        "train.recompute=false",
    ])
    return config_from_dict(data)


def load_weights(step: Path, build_cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """The whole model state dict (local-spec names) of a checkpoint, built at TP1/PP1.

    Needs megatron's parallel state at TP1/PP1 (``files.single_process_runtime``).
    """
    from xm2_megatron.model.builder import build_model
    from xm2_megatron.training.checkpoint import load_checkpoint

    model = build_model(build_cfg)
    rng_notice = logging.getLogger("xm2_megatron.training.checkpoint")
    level = rng_notice.level
    rng_notice.setLevel(logging.ERROR)  # "RNG states not restored": irrelevant to an export
    try:
        load_checkpoint(step, model)
    except (Exception, CheckpointException) as e:  # the latter is a BaseException
        raise ConversionError(f"{step}: cannot load the weights, the checkpoint is incomplete or "
                              f"damaged ({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None
    finally:
        rng_notice.setLevel(level)
    return {name: tensor.detach().clone() for name, tensor in model[0].state_dict().items()
            if isinstance(tensor, torch.Tensor)}
