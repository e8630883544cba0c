"""The layouts a recipe can run at on N GPUs, each with its memory per GPU and expected time.

A layout is feasible when megatron-core accepts it for this model and every global batch size
of the recipe's schedule: TP divides the attention heads and the KV groups (8 for the 1.2B
recipe: TP <= 8) and stays inside a node, PP x virtual stages divides the layers, and each
data-parallel rank gets a whole number of micro-batches, at least PP of them under a pipeline
(a multiple of PP with virtual stages). Time assumes a per-GPU throughput (measured tokens/s,
or a model FLOPs utilisation of the peak) and adds the pipeline bubble and the recomputed
forward pass; communication that does not overlap is in the throughput, not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.planning.memory import Layout, StageMemory, stage_memory

MICRO_BATCH_SIZES = (1, 2, 4, 8)
VIRTUAL_STAGES = (1, 2, 4)


@dataclass(frozen=True)
class Plan:
    layout: Layout
    stages: list[StageMemory]  # first and last pipeline stage
    micro_batches: int  # per data-parallel rank at the recipe's largest global batch
    step_seconds: float  # at the largest global batch
    train_hours: float  # every step of the recipe, its batch-size schedule included

    @property
    def peak_bytes(self) -> float:
        return max(stage.total for stage in self.stages)

    @property
    def bubble(self) -> float:
        """At the largest global batch."""
        return pipeline_bubble(self.layout, self.micro_batches)


def pipeline_bubble(layout: Layout, micro_batches: int) -> float:
    """Pipeline idle time over compute time: (PP - 1) / (V x micro-batches)."""
    return (layout.pipeline_parallel - 1) / (layout.virtual_pipeline * micro_batches)


def batch_sizes(cfg: ExperimentConfig) -> list[int]:
    """Every global batch size the recipe trains with."""
    train = cfg.train
    sizes = {train.global_batch_size_at(c.step) for c in train.batch_size_schedule
             if c.step < train.steps}
    return sorted(sizes | {train.global_batch_size_at(train.steps - 1)})


def tokens_per_batch_size(cfg: ExperimentConfig) -> dict[int, int]:
    """Sequences trained at each global batch size over the whole run."""
    train, total = cfg.train, {}
    starts = sorted({0, *(c.step for c in train.batch_size_schedule if c.step < train.steps)})
    for begin, end in zip(starts, [*starts[1:], train.steps]):
        size = train.global_batch_size_at(begin)
        total[size] = total.get(size, 0) + (end - begin) * size
    return total


def why_infeasible(cfg: ExperimentConfig, layout: Layout, gpus_per_node: int) -> str | None:
    """The first megatron-core or recipe constraint ``layout`` breaks, or None."""
    m, tp, pp, v = cfg.model, layout.tensor_parallel, layout.pipeline_parallel, layout.virtual_pipeline
    if m.num_attention_heads % tp or m.num_query_groups % tp:
        return f"TP {tp} does not divide {m.num_attention_heads} heads / {m.num_query_groups} KV groups"
    if tp > gpus_per_node:
        return f"TP {tp} would cross nodes of {gpus_per_node} GPUs"
    if m.num_layers % (pp * v):
        return f"PP {pp} x V {v} does not divide {m.num_layers} layers"
    if v > 1 and pp == 1:
        return "virtual stages need a pipeline"
    for size in batch_sizes(cfg):
        per_rank, rest = divmod(size, layout.micro_batch_size * layout.data_parallel)
        if rest:
            return f"global batch {size} is not a multiple of micro-batch x DP"
        if pp > 1 and (per_rank < pp or (v > 1 and per_rank % pp)):
            return f"{per_rank} micro-batches per DP rank at batch {size} for PP {pp}"
    return None


def candidate_layouts(gpus: int, gpus_per_node: int) -> list[Layout]:
    """Every TP x PP x DP factorisation of ``gpus`` with each micro-batch, virtual-stage,
    recomputation and optimizer choice (sequence parallelism whenever TP > 1)."""
    layouts = []
    for tp in (t for t in (1, 2, 4, 8, 16) if t <= gpus and gpus % t == 0):
        for pp in (p for p in range(1, gpus // tp + 1) if gpus % (tp * p) == 0):
            for v in VIRTUAL_STAGES:
                for mbs in MICRO_BATCH_SIZES:
                    for recompute in (False, True):
                        for distributed in (True, False):
                            layouts.append(Layout(tp, pp, gpus // (tp * pp), mbs, v, tp > 1,
                                                  recompute, distributed))
    return layouts


def plan(cfg: ExperimentConfig, layout: Layout, vocab_rows: int, tokens_per_gpu_s: float) -> Plan:
    """Memory and time of one feasible ``layout``; ``tokens_per_gpu_s`` is the throughput of
    one GPU without bubble or recomputation."""
    largest = batch_sizes(cfg)[-1]
    micro_batches = largest // (layout.micro_batch_size * layout.data_parallel)
    stages = stage_memory(cfg.model, layout, micro_batches, cfg.train.precision, vocab_rows)
    slowdown = 4 / 3 if layout.recompute else 1.0  # the forward pass runs twice

    def seconds(size: int) -> float:
        m = size // (layout.micro_batch_size * layout.data_parallel)
        tokens = size * cfg.model.seq_length
        return (tokens / (layout.gpus * tokens_per_gpu_s) * slowdown
                * (1 + pipeline_bubble(layout, m)))

    hours = sum(sequences / size * seconds(size)
                for size, sequences in tokens_per_batch_size(cfg).items()) / 3600
    return Plan(layout, stages, micro_batches, seconds(largest), hours)
