"""Memory per GPU of one training layout, from the config alone (docs/scaling.md).

Static memory follows megatron-core's mixed-precision layout as this project configures it:
parameters in the training dtype, gradients accumulated in an fp32 buffer
(``grad_reduce_in_fp32``) and Adam's fp32 master weights and moments, sharded over data
parallelism by the distributed optimizer. Activations count the tensors each layer keeps for
its backward pass: under Transformer Engine with fused (flash) attention (``transformer_impl``
auto or transformer_engine, what a GPU run uses), or with megatron-core's local layers
(``local``, the CPU path: its RMSNorm, SwiGLU and either attention, measured tensor by tensor
in ``tests/test_plan_measured.py``); the pipeline keeps as many micro-batches in flight as
megatron's 1F1B schedules start before their first backward pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from xm2_megatron.config import ModelConfig

GIB = 1024**3


@dataclass(frozen=True)
class Layout:
    """A parallel layout and the per-GPU choices that change memory."""

    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    data_parallel: int = 1
    micro_batch_size: int = 1
    virtual_pipeline: int = 1  # model chunks per pipeline rank (1 = not interleaved)
    sequence_parallel: bool = False
    recompute: bool = False  # full recomputation: each layer keeps only its input
    distributed_optimizer: bool = True

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel * self.data_parallel


@dataclass(frozen=True)
class StageMemory:
    """Bytes one GPU of a pipeline stage holds at its peak."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float  # the layers' saved tensors for every micro-batch in flight
    output: float  # the last stage's logits and loss inputs (one micro-batch)
    micro_batches_in_flight: int

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer + self.activations + self.output


def bytes_per_element(precision: str) -> int:
    return 4 if precision == "fp32" else 2  # fp8 keeps bf16 weights and activations


def optimizer_bytes_per_parameter(precision: str) -> int:
    """Adam's state per parameter: exp_avg and exp_avg_sq, plus an fp32 master copy when the
    parameters are not fp32 themselves."""
    return 8 if precision == "fp32" else 12


def stage_parameters(model: ModelConfig, layout: Layout, vocab_rows: int) -> tuple[int, ...]:
    """Parameters one GPU holds on the first and on the last pipeline stage (one number when
    PP is 1)."""
    from xm2_megatron.model.counting import count_parameters

    count = count_parameters(model, vocab_rows)
    tp, pp = layout.tensor_parallel, layout.pipeline_parallel
    norms = 2 * model.hidden_size
    per_layer = (count.per_layer - norms) // tp + norms
    layers = model.num_layers // pp * per_layer
    embedding = count.embedding // tp
    if pp == 1:
        return (layers + embedding + count.final_norm + count.output_layer // tp,)
    # tied embeddings: the last stage keeps its own copy of the word embeddings (megatron)
    output = (count.output_layer or count.embedding) // tp
    return layers + embedding, layers + count.final_norm + output


def layer_activation_elements(model: ModelConfig, layout: Layout) -> float:
    """Elements one layer keeps per token of one micro-batch for its backward pass.

    Transformer Engine: each norm keeps its input and output, flash attention its q, k, v and
    output (which is also the output projection's input), the MLP its fc1 output (gate and up,
    SwiGLU's input) and SwiGLU's output. Local layers: each RMSNorm keeps its input, the
    normalised input, its output and one fp32 rsqrt per token; SwiGLU keeps fc1's output, its
    two halves, the SiLU output and the product (5 x FFN); megatron's unfused attention keeps
    q, k and v repeated to every head, the softmax of the scores (heads x sequence) and the
    context; PyTorch's SDPA keeps q, the rotated k, the whole qkv projection (v is a view of
    it), the context and one log-sum-exp per head. Under sequence parallelism the norm tensors
    are split over TP ranks like the rest.
    """
    tp = layout.tensor_parallel
    sp = tp if layout.sequence_parallel else 1
    h, f, hd = model.hidden_size, model.ffn_hidden_size, model.head_dim
    heads, groups = model.num_attention_heads, model.num_query_groups
    if layout.recompute:
        return h / sp  # the layer input; the rest is recomputed one layer at a time
    if model.transformer_impl != "local":
        norms, attention, mlp = 4 * h, (2 * heads + 2 * groups) * hd, 3 * f
    elif model.local_attention == "megatron":
        norms, attention, mlp = 2 * (3 * h + 1), 4 * heads * hd + heads * model.seq_length, 5 * f
    else:
        norms, attention, mlp = 2 * (3 * h + 1), (3 * heads + 3 * groups) * hd + heads, 5 * f
    return norms / sp + (attention + mlp) / tp


def layer_constant_bytes(model: ModelConfig, layout: Layout, precision: str) -> float:
    """What a local layer keeps per micro-batch whatever its batch size: the rotary cos and
    sin of q and k (sequence x head_dim each) and, with unfused attention, the causal mask
    (sequence^2 booleans). Not counted for Transformer Engine (its fused RoPE keeps none)."""
    if model.transformer_impl != "local" or layout.recompute:
        return 0.0
    s = model.seq_length
    mask = s * s if model.local_attention == "megatron" else 0
    return 4 * s * model.head_dim * bytes_per_element(precision) + mask


def layer_activation_bytes(model: ModelConfig, layout: Layout, precision: str) -> float:
    """Bytes one layer keeps for its backward pass for one micro-batch."""
    tokens = layout.micro_batch_size * model.seq_length
    return (layer_activation_elements(model, layout) * tokens * bytes_per_element(precision)
            + layer_constant_bytes(model, layout, precision))


def micro_batches_in_flight(layout: Layout, micro_batches: int, stage: int) -> int:
    """Model-chunk micro-batches a pipeline rank holds activations for at its peak: the
    warm-up forward passes of megatron's (interleaved) 1F1B schedule plus the current one,
    counted in units of one chunk (``num_layers / (PP x V)`` layers)."""
    pp, v = layout.pipeline_parallel, layout.virtual_pipeline
    if pp == 1:
        return 1
    if v == 1:
        warmup = pp - stage - 1
    else:
        warmup = (pp - stage - 1) * 2 + (v - 1) * pp
    return min(warmup + 1, micro_batches * v)


def output_activation_bytes(model: ModelConfig, layout: Layout, vocab_rows: int,
                            precision: str) -> float:
    """The last stage's loss inputs for one micro-batch: the final norm's input and output
    and the logits, kept in the training dtype and, unless that is fp32, again in fp32 by the
    cross entropy."""
    tokens = layout.micro_batch_size * model.seq_length
    sp = layout.tensor_parallel if layout.sequence_parallel else 1
    element = bytes_per_element(precision)
    norm = 2 * model.hidden_size / sp * element
    logits = vocab_rows / layout.tensor_parallel * (element + (4 if element != 4 else 0))
    return tokens * (norm + logits)


def stage_memory(model: ModelConfig, layout: Layout, micro_batches: int, precision: str,
                 vocab_rows: int) -> list[StageMemory]:
    """Memory of the first and of the last pipeline stage (one entry when PP is 1);
    ``micro_batches`` is the number per optimizer step on each data-parallel rank."""
    element = bytes_per_element(precision)
    chunk_layers = model.num_layers / (layout.pipeline_parallel * layout.virtual_pipeline)
    per_chunk = chunk_layers * layer_activation_bytes(model, layout, precision)
    rebuilt = 0.0  # under recomputation, one layer's activations exist during its backward
    if layout.recompute:
        rebuilt = layer_activation_bytes(model, dataclasses.replace(layout, recompute=False),
                                         precision)
    shard = layout.data_parallel if layout.distributed_optimizer else 1
    output = output_activation_bytes(model, layout, vocab_rows, precision)
    last = layout.pipeline_parallel - 1
    result = []
    for stage, params in zip(sorted({0, last}), stage_parameters(model, layout, vocab_rows)):
        in_flight = micro_batches_in_flight(layout, micro_batches, stage)
        result.append(StageMemory(
            parameters=params * element,
            gradients=params * 4.0,
            optimizer=params * optimizer_bytes_per_parameter(precision) / shard,
            activations=in_flight * per_chunk + rebuilt,
            output=output if stage == last else 0.0,
            micro_batches_in_flight=in_flight,
        ))
    return result
