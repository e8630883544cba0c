"""Read any trainer checkpoint as one TP1/PP1 model: for export, evaluation and tools.

The torch_dist format stores every tensor whole, so the model is built in this process at
TP1/PP1 from the checkpoint's own config and megatron reshards on load. Checkpoints saved
with the Transformer Engine spec (GPU) store the local spec's tensor names, so they load
with local layers here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from megatron.core import dist_checkpointing

from xm2_megatron.checkpoint.format import CONFIG_FILE, find_checkpoint, read_checkpoint_config
from xm2_megatron.checkpoint.store import load_checkpoint
from xm2_megatron.config import ExperimentConfig, apply_overrides, config_from_dict, config_to_dict
from xm2_megatron.errors import CheckpointError, UserError

EMBEDDING = "embedding.word_embeddings.weight"
OUTPUT = "output_layer.weight"


def find_step(path: str | Path) -> Path:
    """The complete step folder under ``path`` (``latest``, else the newest complete one)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    step = find_checkpoint(path)
    if step is None:
        raise CheckpointError(f"{path} holds no complete checkpoint (a step folder iter_NNNNNNN "
                              "with metadata.json, common.pt and rng.pt)")
    return step


def checkpoint_config(step: Path) -> ExperimentConfig:
    """The experiment config a checkpoint was saved with."""
    where = step / CONFIG_FILE
    try:
        data = read_checkpoint_config(step)
    except FileNotFoundError:
        raise CheckpointError(f"{where} is missing: the checkpoint is incomplete") from None
    except Exception as e:  # YAML errors and unreadable files alike
        raise CheckpointError(f"{where} cannot be read: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where} must hold a mapping (the resolved config)")
    try:
        return config_from_dict(data, source=f"in {where}")
    except UserError as e:
        raise CheckpointError(str(e)) from None


def stored_shapes(step: Path) -> dict[str, tuple[int, ...]]:
    """Global shapes of the model tensors in a checkpoint (the optimizer's are left out)."""
    try:
        metadata = dist_checkpointing.load_tensors_metadata(str(step))
    except Exception as e:
        raise CheckpointError(f"{step}: cannot read the tensor metadata ({type(e).__name__}: "
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
        raise CheckpointError(f"{step}: weight {EMBEDDING!r} is missing: not a complete "
                              "xm2-megatron GPT checkpoint")
    rows = stored[EMBEDDING][0]
    if rows < cfg.model.vocab_size:
        raise CheckpointError(f"{step}: weight {EMBEDDING!r} has {rows} rows, fewer than "
                              f"model.vocab_size={cfg.model.vocab_size} in {CONFIG_FILE}")
    for name, shape in expected_shapes(cfg, rows).items():
        if name not in stored:
            hint = " (config.yaml has model.tie_embeddings=false)" if name == OUTPUT else ""
            raise CheckpointError(f"{step}: weight {name!r} is missing{hint}")
        if stored[name] != shape:
            raise CheckpointError(f"{step}: weight {name!r} has shape {stored[name]} but "
                                  f"{CONFIG_FILE} (model.*) implies {shape}")
    return rows


def weights_precision(train_precision: str) -> str:
    """The dtype a run keeps its weights in (fp8 runs keep bf16 weights)."""
    return "fp32" if train_precision == "fp32" else "bf16"


def single_process_config(cfg: ExperimentConfig, vocab_rows: int,
                          precision: str | None = None) -> ExperimentConfig:
    """``cfg`` at TP1/PP1 with local layers, ``precision`` params (default: the run's weights'),
    and a vocabulary padded to exactly ``vocab_rows`` (``make_vocab_size_divisible_by`` =
    rows: one multiple at TP1)."""
    precision = precision or weights_precision(cfg.train.precision)
    data = apply_overrides(config_to_dict(cfg), [
        "parallel.tensor_parallel=1", "parallel.pipeline_parallel=1",
        "parallel.sequence_parallel=false", "model.transformer_impl=local",
        f"model.make_vocab_size_divisible_by={vocab_rows}", f"train.precision={precision}",
        "train.recompute=false",
    ])
    return config_from_dict(data)


@dataclass(frozen=True)
class InferenceModel:
    """A checkpoint's model at TP1/PP1 in eval mode, and what it was saved with."""

    model: torch.nn.Module  # a megatron GPTModel (local layers)
    config: ExperimentConfig  # the checkpoint's own config (its training layout)
    step_dir: Path

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's tensors (local-spec names), detached copies."""
        return {name: t.detach().clone() for name, t in self.model.state_dict().items()
                if isinstance(t, torch.Tensor)}


def load_for_inference(path: str | Path | None, precision: str | None = None,
                       config: ExperimentConfig | None = None) -> InferenceModel:
    """The model of the checkpoint :func:`find_step` picks under ``path``, built at TP1/PP1
    with ``precision`` weights (fp32 | bf16; default: the run's). ``path=None`` with a
    ``config`` gives that config's untrained model. Needs a world-size-1 runtime
    (``xm2_megatron.runtime.single_process_runtime``)."""
    from xm2_megatron.model import build_model, padded_vocab_size

    if path is None:
        if config is None:
            raise ValueError("load_for_inference needs a checkpoint path or a config")
        m = config.model
        rows = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, 1)
        model = build_model(single_process_config(config, rows, precision))[0]
        return InferenceModel(model.eval(), config, None)
    step = find_step(path)
    cfg = checkpoint_config(step)
    rows = check_shapes(step, cfg, stored_shapes(step))
    chunks = build_model(single_process_config(cfg, rows, precision))
    load_checkpoint(step, chunks, restore_rng=False)
    return InferenceModel(chunks[0].eval(), cfg, step)
