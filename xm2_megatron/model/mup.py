"""µP (Tensor Programs, MiniCPM style) for width and depth, on megatron-core's extension points.

The five operations of the Xmodel-2 paper (Table 6), with ``width_mult = d / dim_model_base``:

1. embedding output x ``scale_emb``                      -> forward hook on ``model.embedding``
2. attention and MLP outputs x ``scale_depth/sqrt(L)``    -> the layer spec's ``*_bda`` functions
   before the residual add
3. init std ``init_std/sqrt(width_mult)`` for hidden      -> ``TransformerConfig`` init methods
   2-D weights, ``init_std`` for the embedding
4. lr ``lr/width_mult`` for hidden 2-D weights            -> ``mup_hidden`` attribute, read by the
                                                             optimizer's ParamKey override
5. logits x ``1/width_mult``                              -> forward pre-hook on ``output_layer``
                                                             (scales its input: same result, cheaper)

Hooks are not part of the state dict, so :func:`apply_mup` runs wherever a model is built.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.transformer.spec_utils import ModuleSpec

from xm2_megatron.config import ModelConfig, MupConfig


@dataclasses.dataclass(frozen=True)
class MupMultipliers:
    """The resolved µP numbers for one model; all ones (and plain inits) with µP off."""

    width_mult: float
    embedding: float  # op 1
    residual: float  # op 2
    hidden_init_std: float  # op 3
    embedding_init_std: float  # op 3
    hidden_lr: float  # op 4
    logits: float  # op 5
    softmax_scale: float | None  # None: megatron's 1/sqrt(head_dim)


def mup_multipliers(model: ModelConfig, mup: MupConfig) -> MupMultipliers:
    """Resolve the multipliers of the µP operations for a model shape."""
    softmax_scale = 1.0 / model.head_dim if mup.attention_scale == "linear" else None
    if not mup.enabled:
        return MupMultipliers(1.0, 1.0, 1.0, mup.init_std, mup.init_std, 1.0, 1.0, softmax_scale)
    width_mult = model.hidden_size / mup.dim_model_base
    return MupMultipliers(
        width_mult=width_mult,
        embedding=mup.scale_emb,
        residual=mup.scale_depth / math.sqrt(model.num_layers),
        hidden_init_std=mup.init_std / math.sqrt(width_mult),
        embedding_init_std=mup.init_std,
        hidden_lr=1.0 / width_mult,
        logits=1.0 / width_mult,
        softmax_scale=softmax_scale,
    )


def scaled_bias_dropout_add(multiplier: float):
    """A bias-dropout-add that scales the branch output before the residual add.

    megatron's ``build_module`` passes a spec entry through only if it is a plain function,
    so this returns a closure (not a partial or a callable object).
    """

    def bias_dropout_add(training: bool, fused: bool):
        inner = get_bias_dropout_add(training, fused)

        def scaled(x_with_bias, residual, prob):
            out, bias = x_with_bias
            bias = None if bias is None else bias * multiplier
            return inner((out * multiplier, bias), residual, prob)

        return scaled

    return bias_dropout_add


def mup_layer_spec(spec: ModuleSpec, residual: float) -> ModuleSpec:
    """The layer spec with both residual branches scaled by ``residual`` (op 2)."""
    if residual == 1.0:
        return spec
    bda = scaled_bias_dropout_add(residual)
    submodules = dataclasses.replace(spec.submodules, self_attn_bda=bda, mlp_bda=bda)
    return dataclasses.replace(spec, submodules=submodules)


def is_hidden_weight(name: str, param: torch.nn.Parameter) -> bool:
    """A 2-D weight whose fan-in grows with width: everything but embeddings and norms.

    The tied output weight that the last pipeline stage holds is the embedding (lr 1);
    an untied output layer is a hidden-width matrix and follows the hidden rule.
    """
    if param.dim() < 2 or "word_embeddings" in name:
        return False
    return not getattr(param, "shared_embedding", False)


def apply_mup(model: torch.nn.Module, multipliers: MupMultipliers) -> None:
    """Install the µP forward hooks (ops 1 and 5) and mark hidden weights (op 4).

    ``model`` is one megatron ``GPTModel`` chunk; under pipeline parallelism only the
    stages that own the embedding or the output layer get those hooks.
    """
    for name, param in model.named_parameters():
        param.mup_hidden = is_hidden_weight(name, param)
    if multipliers.embedding != 1.0 and getattr(model, "pre_process", False):
        scale = multipliers.embedding
        model.embedding.register_forward_hook(lambda module, args, output: output * scale)
    if multipliers.logits != 1.0 and getattr(model, "post_process", False):
        factor = multipliers.logits

        def scale_output_input(module, args, kwargs):
            return (args[0] * factor, *args[1:]), kwargs

        model.output_layer.register_forward_pre_hook(scale_output_input, with_kwargs=True)
