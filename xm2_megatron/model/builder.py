"""Build the Xmodel-2 decoder as megatron-core ``GPTModel`` chunks.

Llama-style: GQA, SwiGLU, RMSNorm (pre-norm), RoPE, no biases, tied embeddings by default.
Transformer Engine layers on a GPU that has TE (bf16 or fp8), megatron's local layers
elsewhere, with PyTorch's fused attention in them by default (see ``attention.py``); the
µP operations are added through the layer spec and hooks (see ``mup.py``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_layer import (
    TransformerLayer,
    get_transformer_layer_offset,
)
from megatron.core.utils import get_pg_rank, init_method_normal

from xm2_megatron.config import ConfigError, ExperimentConfig
from xm2_megatron.model.attention import SDPAttention
from xm2_megatron.model.mup import apply_mup, mup_layer_spec, mup_multipliers
from xm2_megatron.model.norm import LocalRMSNorm

_PARAM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8": torch.bfloat16}


def param_dtype(precision: str) -> torch.dtype:
    """The dtype parameters and activations are kept in (fp8 runs keep bf16 parameters)."""
    return _PARAM_DTYPES[precision]


def padded_vocab_size(vocab_size: int, divisible_by: int, tensor_parallel: int) -> int:
    """The vocabulary padded to a multiple of ``lcm(divisible_by, TP)``.

    Megatron-LM pads to ``divisible_by x TP``, so the embedding's shape, and with it every
    checkpoint, depends on TP (65,280 rows at TP 1-2, 65,536 at TP 4). With the least common
    multiple the rows split evenly over TP ranks and stay the same for every TP that divides
    ``divisible_by`` (1, 2, 4, 8 with 128), so a checkpoint loads at any of those layouts.
    """
    multiple = math.lcm(divisible_by, tensor_parallel)
    return -(-vocab_size // multiple) * multiple


def resolve_transformer_impl(requested: str) -> str:
    """``auto`` picks Transformer Engine where it can run (a GPU with TE), else local."""
    if requested != "auto":
        return requested
    has_te = importlib.util.find_spec("transformer_engine") is not None
    return "transformer_engine" if has_te and torch.cuda.is_available() else "local"


def gradient_accumulation_fusion(cfg: ExperimentConfig) -> bool:
    """Accumulate weight gradients straight into megatron's fp32 ``main_grad`` inside the
    GEMM: on the TE path on a GPU where Apex's ``fused_weight_gradient_mlp_cuda`` is installed
    (megatron's own output layer refuses the fusion without it; TE's linears fuse natively)."""
    return (torch.cuda.is_available() and uses_transformer_engine(cfg)
            and importlib.util.find_spec("fused_weight_gradient_mlp_cuda") is not None)


def fp8_settings(recipe: str) -> dict:
    """``TransformerConfig`` fp8 fields: E4M3 forward / E5M2 backward ("hybrid") with TE's
    delayed scaling (amax history of 1024 steps, as Megatron-LM's GPT examples) or current
    (per-tensor, "tensorwise") scaling."""
    settings = {"fp8": "hybrid", "fp8_recipe": recipe}
    if recipe == "delayed":
        settings.update(fp8_amax_history_len=1024, fp8_amax_compute_algo="max")
    return settings


def build_transformer_config(cfg: ExperimentConfig) -> TransformerConfig:
    """The megatron ``TransformerConfig`` of a recipe, µP inits included."""
    model, parallel = cfg.model, cfg.parallel
    mup = mup_multipliers(model, cfg.mup)
    on_gpu = torch.cuda.is_available()
    dtype = param_dtype(cfg.train.precision)
    init_kwargs = {"init_method_std": mup.hidden_init_std}
    if cfg.mup.enabled:
        init_kwargs.update(
            init_method=init_method_normal(mup.hidden_init_std),
            output_layer_init_method=init_method_normal(mup.hidden_init_std),
            embedding_init_method=init_method_normal(mup.embedding_init_std),
            embedding_init_method_std=mup.embedding_init_std,
        )
    fp8_kwargs = fp8_settings(cfg.train.fp8_recipe) if cfg.train.precision == "fp8" else {}
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        softmax_scale=mup.softmax_scale,
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline,
        sequence_parallel=parallel.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        use_cpu_initialization=not on_gpu,
        bias_activation_fusion=on_gpu,
        masked_softmax_fusion=on_gpu,
        bias_dropout_fusion=on_gpu,
        apply_rope_fusion=False,
        persist_layer_norm=on_gpu,
        gradient_accumulation_fusion=gradient_accumulation_fusion(cfg),
        calculate_per_token_loss=True,
        batch_p2p_sync=on_gpu,
        # the interleaved schedule sends forward and backward tensors in separate calls
        # (Megatron-LM's default for it): batched together at PP 2, where the previous and
        # the next rank are one peer, an activation and a gradient silently trade places
        overlap_p2p_comm=parallel.virtual_pipeline is not None,
        batch_p2p_comm=parallel.virtual_pipeline is None,
        recompute_granularity="full" if cfg.train.recompute else None,
        recompute_method="uniform" if cfg.train.recompute else None,
        recompute_num_layers=1 if cfg.train.recompute else None,
        **init_kwargs,
        **fp8_kwargs,
    )


class SeededTransformerLayer(TransformerLayer):
    """A ``TransformerLayer`` whose weights are drawn right after seeding the generators with
    (seed, global layer number), so the pipeline layout does not change the initial model.

    Both the default generator (CPU initialisation draws whole master weights from it, which
    makes TP layouts agree too) and megatron's model-parallel tracker (GPU initialisation
    draws each TP shard inside it) are reseeded.
    """

    def __init__(self, config, submodules, layer_number=1, *, init_seed: int, **kwargs):
        pg_collection = kwargs.get("pg_collection")
        pp_rank = None if pg_collection is None else get_pg_rank(pg_collection.pp)
        offset = get_transformer_layer_offset(config, kwargs.get("vp_stage"), pp_rank)
        layer_seed = init_seed * 100_003 + layer_number + offset
        torch.manual_seed(layer_seed)
        model_parallel_cuda_manual_seed(layer_seed)
        super().__init__(config, submodules, layer_number, **kwargs)


def with_core_attention(spec, core_attention):
    """A layer spec whose self-attention uses ``core_attention`` (a module class)."""
    attention = spec.submodules.self_attention
    attention = dataclasses.replace(attention, submodules=dataclasses.replace(
        attention.submodules, core_attention=core_attention))
    return dataclasses.replace(
        spec, submodules=dataclasses.replace(spec.submodules, self_attention=attention))


def with_local_norms(spec):
    """A local layer spec whose norms are ``LocalRMSNorm`` (they run under sequence
    parallelism; megatron's ``WrappedTorchNorm`` refuses it)."""
    return dataclasses.replace(spec, submodules=dataclasses.replace(
        spec.submodules, input_layernorm=LocalRMSNorm, pre_mlp_layernorm=LocalRMSNorm))


def uses_transformer_engine(cfg: ExperimentConfig) -> bool:
    return resolve_transformer_impl(cfg.model.transformer_impl) == "transformer_engine"


def build_layer_spec(cfg: ExperimentConfig):
    """The per-layer module spec: TE, or local (``LocalRMSNorm``) with SDPA or megatron's
    unfused core attention; seeded per layer, µP residual scaling."""
    if uses_transformer_engine(cfg):
        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        if cfg.train.precision == "fp8":
            raise ConfigError("train.precision='fp8' needs Transformer Engine, which is not "
                              "installed or has no GPU here (model.transformer_impl resolved to local)")
        spec = with_local_norms(get_gpt_layer_local_spec(normalization="RMSNorm"))
        if cfg.model.local_attention == "sdpa":
            spec = with_core_attention(spec, SDPAttention)
    spec = dataclasses.replace(
        spec, module=SeededTransformerLayer, params={**spec.params, "init_seed": cfg.train.seed}
    )
    return mup_layer_spec(spec, mup_multipliers(cfg.model, cfg.mup).residual)


def build_block_spec(cfg: ExperimentConfig, config: TransformerConfig, vp_stage: int | None = None):
    """This (virtual) pipeline stage's decoder: the layer spec for each of its layers and, on
    the local path, a ``LocalRMSNorm`` final norm (megatron picks TE's on the TE path)."""
    layer = build_layer_spec(cfg)
    if uses_transformer_engine(cfg):
        return layer
    layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * layers, layer_norm=LocalRMSNorm)


def build_chunk(cfg: ExperimentConfig, config: TransformerConfig,
                vp_stage: int | None = None) -> GPTModel:
    """The ``GPTModel`` of one (virtual) pipeline stage of this rank."""
    tp = parallel_state.get_tensor_model_parallel_world_size()
    stage = {"ignore_virtual": vp_stage is None, "vp_stage": vp_stage}
    return GPTModel(
        config=config,
        transformer_layer_spec=build_block_spec(cfg, config, vp_stage),
        vocab_size=padded_vocab_size(
            cfg.model.vocab_size, cfg.model.make_vocab_size_divisible_by, tp
        ),
        max_sequence_length=cfg.model.seq_length,
        pre_process=parallel_state.is_pipeline_first_stage(**stage),
        post_process=parallel_state.is_pipeline_last_stage(**stage),
        parallel_output=True,
        share_embeddings_and_output_weights=cfg.model.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=int(cfg.model.rotary_base),
        vp_stage=vp_stage,
    )


def build_model(cfg: ExperimentConfig) -> list[GPTModel]:
    """This rank's model chunks (one per pipeline stage it owns: ``parallel.virtual_pipeline``
    of them under the interleaved schedule), µP hooks installed.

    The initial weights depend on the seed only, not on the TP/PP/virtual layout: the
    embedding is drawn first from the seeded generator, each layer from its own seed (see
    ``SeededTransformerLayer``; on GPU the TP shards still differ by TP size), and the tied
    output weight is the embedding. Needs megatron's parallel state (``xm2_megatron.runtime.init_runtime``).
    """
    transformer_config = build_transformer_config(cfg)
    virtual = cfg.parallel.virtual_pipeline
    torch.manual_seed(cfg.train.seed)  # the embedding (first stage) draws from here
    chunks = [build_chunk(cfg, transformer_config, stage)
              for stage in (range(virtual) if virtual else [None])]
    torch.manual_seed(cfg.train.seed)  # the run's streams, as before the per-layer reseeding
    model_parallel_cuda_manual_seed(cfg.train.seed)
    for chunk in chunks:
        if torch.cuda.is_available():
            chunk.cuda(torch.cuda.current_device())
        apply_mup(chunk, mup_multipliers(cfg.model, cfg.mup))
    return chunks
