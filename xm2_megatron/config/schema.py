"""Typed configuration of an Xmodel-2 experiment.

Defaults are the paper's 1.2B model and run (Xmodel-2, arXiv 2412.19638; see
``recipes/xmodel2_1p2b.yaml``). Every section checks itself in ``validate``;
``ExperimentConfig.validate`` adds the checks that span sections (parallel layout
against model shape and batch size). Errors are ``ConfigError`` naming the dotted
field, the bad value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xm2_megatron.config.checks import check as _check
from xm2_megatron.config.checks import divisible as _divisible
from xm2_megatron.config.checks import non_negative as _non_negative
from xm2_megatron.config.checks import one_of as _one_of
from xm2_megatron.config.checks import positive as _positive
from xm2_megatron.config.data_schema import DataConfig

TRANSFORMER_IMPLS = ("auto", "local", "transformer_engine")
LOCAL_ATTENTIONS = ("sdpa", "megatron")
FP8_RECIPES = ("delayed", "tensorwise")
ATTENTION_SCALES = ("sqrt", "linear")
DECAY_STYLES = ("half_life", "linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp8")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class ModelConfig:
    """Llama-style decoder shape (RMSNorm, RoPE, SwiGLU, GQA, no biases)."""

    hidden_size: int = 1536  # model width d
    ffn_hidden_size: int = 3840  # SwiGLU intermediate size
    num_layers: int = 48  # transformer blocks
    num_attention_heads: int = 24  # query heads
    num_query_groups: int = 8  # KV heads (GQA groups)
    vocab_size: int = 65280  # tokenizer vocabulary (unpadded)
    seq_length: int = 4096  # training context length
    tie_embeddings: bool = True  # share input embedding and LM head
    rotary_base: float = 10000.0  # RoPE theta
    norm_eps: float = 1e-5  # RMSNorm epsilon
    make_vocab_size_divisible_by: int = 128  # vocab padded to a multiple of lcm(this, TP)
    transformer_impl: str = "auto"  # auto | local | transformer_engine
    # core attention of the local spec: sdpa = PyTorch's fused scaled_dot_product_attention,
    # megatron = megatron's unfused DotProductAttention (the TE spec always uses TE's attention)
    local_attention: str = "sdpa"

    @property
    def head_dim(self) -> int:
        """Per-head width: hidden_size // num_attention_heads."""
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        _positive("model", self, "hidden_size", "ffn_hidden_size", "num_layers", "num_attention_heads",
                  "num_query_groups", "vocab_size", "seq_length", "rotary_base", "norm_eps",
                  "make_vocab_size_divisible_by")
        _one_of("model.transformer_impl", self.transformer_impl, TRANSFORMER_IMPLS)
        _one_of("model.local_attention", self.local_attention, LOCAL_ATTENTIONS)
        _divisible("model.hidden_size", self.hidden_size, "model.num_attention_heads",
                   self.num_attention_heads, "the head dimension must be a whole number")
        _divisible("model.num_attention_heads", self.num_attention_heads, "model.num_query_groups",
                   self.num_query_groups, "the number of attention heads must be a multiple of the KV heads")


@dataclass
class MupConfig:
    """µP (Tensor Programs) multipliers, MiniCPM style; width_mult = hidden_size / dim_model_base."""

    enabled: bool = True  # apply the five µP operations
    scale_emb: float = 12.0  # embedding output multiplier
    dim_model_base: int = 256  # base width the hyperparameters were tuned at
    scale_depth: float = 1.4  # residual branches scaled by scale_depth / sqrt(num_layers)
    init_std: float = 0.1  # base init std (hidden matrices use init_std / sqrt(width_mult))
    attention_scale: str = "sqrt"  # softmax scale: sqrt = 1/sqrt(head_dim), linear = µP's 1/head_dim

    def validate(self) -> None:
        _positive("mup", self, "scale_emb", "dim_model_base", "scale_depth", "init_std")
        _one_of("mup.attention_scale", self.attention_scale, ATTENTION_SCALES)


@dataclass
class OptimizerConfig:
    """AdamW settings (Megatron's optimizer); lr is the µP base lr."""

    lr: float = 0.01  # peak learning rate (hidden matrices get lr / width_mult under µP)
    min_lr: float = 0.0  # floor for the decayed learning rate
    weight_decay: float = 0.1  # decoupled weight decay
    adam_beta1: float = 0.9  # Adam first-moment decay
    adam_beta2: float = 0.95  # Adam second-moment decay
    adam_eps: float = 1e-8  # Adam denominator epsilon
    clip_grad: float = 1.0  # global gradient-norm clip (0 disables)
    use_distributed_optimizer: bool = True  # shard optimizer state over data-parallel ranks

    def validate(self) -> None:
        _positive("optimizer", self, "lr", "adam_eps")
        _non_negative("optimizer", self, "min_lr", "weight_decay", "clip_grad")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"optimizer.{name}={value!r} must be in [0, 1)")
        _check(self.min_lr <= self.lr,
               f"optimizer.min_lr={self.min_lr!r} must not exceed optimizer.lr={self.lr!r}")


@dataclass
class ScheduleConfig:
    """Warmup-Stable-Decay learning-rate schedule, in optimizer steps (0-based)."""

    warmup_steps: int = 2000  # linear warmup from 0 to optimizer.lr
    decay_style: str = "half_life"  # half_life | linear | cosine | constant
    decay_start: int | None = None  # optimizer step where decay begins; None = no decay
    half_life_steps: int = 5000  # half_life: lr = lr * 0.5 ** ((step - decay_start) / half_life_steps)
    decay_steps: int | None = None  # linear/cosine: steps from decay_start down to optimizer.min_lr

    def validate(self) -> None:
        _non_negative("schedule", self, "warmup_steps", "decay_start")
        _positive("schedule", self, "half_life_steps", "decay_steps")
        _one_of("schedule.decay_style", self.decay_style, DECAY_STYLES)
        if self.decay_start is not None:
            _check(self.decay_start >= self.warmup_steps,
                   f"schedule.decay_start={self.decay_start} is before the end of warmup "
                   f"(schedule.warmup_steps={self.warmup_steps}): decay must start after warmup")
            if self.decay_style in ("linear", "cosine"):
                _check(self.decay_steps is not None,
                       f"schedule.decay_steps=None must be set for schedule.decay_style={self.decay_style!r}")


@dataclass
class BatchChange:
    """From optimizer step ``step`` (0-based) on, use ``global_batch_size`` sequences per step."""

    step: int  # first optimizer step with this batch size
    global_batch_size: int  # sequences per optimizer step from then on


@dataclass
class TrainConfig:
    """Length, batch sizes and numerics of the training loop."""

    steps: int = 10  # optimizer steps to run
    micro_batch_size: int = 1  # sequences per forward/backward on one data-parallel rank
    global_batch_size: int = 960  # sequences per optimizer step (when no schedule entry applies)
    # step-indexed batch sizes; the last entry with step <= s applies at step s, else global_batch_size
    batch_size_schedule: list[BatchChange] = field(default_factory=list)
    seed: int = 1234  # model init / dropout seed
    precision: str = "bf16"  # fp32 | bf16 | fp8
    # fp8 scaling (Transformer Engine): delayed = amax history, tensorwise = current scaling
    fp8_recipe: str = "delayed"
    log_interval: int = 1  # log every N steps
    max_skipped_steps: int = 5  # consecutive non-finite (NaN/Inf) steps that stop the run
    eval_interval: int | None = None  # validation loss every N steps (and at the end); None = never
    eval_iters: int = 4  # micro-batches per data-parallel rank in one validation
    # save and exit (code 75) once this much wall-clock time has passed; None = no limit
    time_limit_minutes: float | None = None
    recompute: bool = False  # full activation recomputation

    def global_batch_size_at(self, step: int) -> int:
        """The global batch size in effect at optimizer step ``step``."""
        size = self.global_batch_size
        for change in self.batch_size_schedule:
            if change.step <= step:
                size = change.global_batch_size
        return size

    def samples_between(self, start: int, stop: int) -> int:
        """Sequences consumed by optimizer steps ``start`` .. ``stop - 1`` (closed form)."""
        if stop <= start:
            return 0
        points = sorted({start, stop} | {c.step for c in self.batch_size_schedule if start < c.step < stop})
        return sum(self.global_batch_size_at(a) * (b - a) for a, b in zip(points, points[1:]))

    def validate(self) -> None:
        _positive("train", self, "steps", "micro_batch_size", "global_batch_size", "log_interval",
                  "max_skipped_steps", "time_limit_minutes", "eval_interval", "eval_iters")
        _one_of("train.precision", self.precision, PRECISIONS)
        _one_of("train.fp8_recipe", self.fp8_recipe, FP8_RECIPES)
        previous = None
        for i, change in enumerate(self.batch_size_schedule):
            key = f"train.batch_size_schedule[{i}]"
            _non_negative(key, change, "step")
            _positive(key, change, "global_batch_size")
            _check(previous is None or change.step > previous,
                   f"{key}.step={change.step} must be greater than the previous entry's step={previous}: "
                   "schedule steps must be strictly increasing")
            previous = change.step


@dataclass
class ParallelConfig:
    """Model-parallel layout; data parallelism takes the rest of the world."""

    tensor_parallel: int = 1  # tensor-model-parallel size
    pipeline_parallel: int = 1  # pipeline-model-parallel size
    sequence_parallel: bool = False  # shard norms/dropout along the sequence over TP ranks
    # model chunks per pipeline rank, run by megatron's interleaved 1F1B schedule (each rank
    # holds num_layers / (pipeline_parallel x virtual_pipeline) layers per chunk); None = one
    virtual_pipeline: int | None = None
    # megatron DDP: reduce gradients bucket by bucket while the backward pass goes on, and
    # (distributed optimizer) gather the updated parameters during the next forward pass
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False
    ddp_bucket_size: int | None = None  # parameters per bucket; None = megatron's default

    def data_parallel(self, world_size: int) -> int:
        """Data-parallel size for ``world_size`` ranks."""
        return world_size // (self.tensor_parallel * self.pipeline_parallel)

    def validate(self) -> None:
        _positive("parallel", self, "tensor_parallel", "pipeline_parallel", "ddp_bucket_size")
        _check(not self.overlap_param_gather or self.overlap_grad_reduce,
               "parallel.overlap_param_gather=True requires parallel.overlap_grad_reduce=True "
               "(megatron gathers parameters per gradient bucket)")
        _check(self.virtual_pipeline is None or self.virtual_pipeline >= 2,
               f"parallel.virtual_pipeline={self.virtual_pipeline!r} must be null (one model chunk "
               "per pipeline rank) or at least 2")
        _check(self.virtual_pipeline is None or self.pipeline_parallel > 1,
               f"parallel.virtual_pipeline={self.virtual_pipeline} requires parallel.pipeline_parallel"
               f" > 1 (got {self.pipeline_parallel}): virtual stages interleave a pipeline")
        _check(not self.sequence_parallel or self.tensor_parallel > 1,
               f"parallel.sequence_parallel=True requires parallel.tensor_parallel > 1 "
               f"(got parallel.tensor_parallel={self.tensor_parallel})")


@dataclass
class CheckpointConfig:
    """Saving and loading of distributed checkpoints."""

    dir: str | None = None  # directory to save into; None = do not save
    interval: int | None = None  # save every N steps (and at the end); None = only at the end
    keep_last: int = 3  # checkpoints to keep in dir
    # a directory (or one iter_* folder) to start from when dir holds no checkpoint yet (a
    # fine-tune, a decay branch); once dir has one, the run resumes from dir (a requeued job
    # picks up where it stopped)
    load: str | None = None
    # write tensors from a background process while training goes on (megatron's async
    # dist_checkpointing); the save on a stop signal and the last save wait for completion
    async_save: bool = False

    def validate(self) -> None:
        _positive("checkpoint", self, "interval", "keep_last")


@dataclass
class LoggingConfig:
    """Metrics output: Weights & Biases and local files."""

    wandb_mode: str = "disabled"  # online | offline | disabled
    wandb_project: str = "xm2-megatron"  # W&B project
    run_name: str | None = None  # W&B / output run name; None = the experiment name
    output_dir: str = "runs"  # local logs and metrics root

    def validate(self) -> None:
        _one_of("logging.wandb_mode", self.wandb_mode, WANDB_MODES)
        _check(bool(self.output_dir), "logging.output_dir='' must not be empty")


@dataclass
class BenchmarksConfig:
    """In-loop benchmarks: lm-eval tasks (``xm2-eval``'s names) on the first ``limit`` items,
    every ``interval`` steps and after the last, logged like the loss (docs/evaluation.md)."""

    tasks: list[str] = field(default_factory=list)  # e.g. [xm2_arc_easy, xm2_hellaswag]
    interval: int | None = None  # steps between runs; required when tasks are given
    limit: int = 200  # items per task
    batch_size: int = 16

    def validate(self) -> None:
        _positive("benchmarks", self, "interval", "limit", "batch_size")
        _check(not self.tasks or self.interval is not None,
               f"benchmarks.tasks={self.tasks} needs benchmarks.interval (steps between runs)")


@dataclass
class ExperimentConfig:
    """A whole experiment: one recipe after ``extends`` and overrides are resolved."""

    name: str  # experiment name (defaults to the recipe file's stem)
    model: ModelConfig = field(default_factory=ModelConfig)
    mup: MupConfig = field(default_factory=MupConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)

    def validate(self, world_size: int | None = None) -> ExperimentConfig:
        """Check every section and the cross-section constraints; return self.

        ``world_size`` (total ranks) enables the checks that need it: TP x PP must divide it
        and every global batch size must split into whole micro-batches per data-parallel rank.
        """
        _check(bool(self.name), "name='' must not be empty")
        for section in (self.model, self.mup, self.optimizer, self.schedule, self.train, self.data,
                        self.parallel, self.checkpoint, self.logging, self.benchmarks):
            section.validate()
        m, p, t = self.model, self.parallel, self.train
        tp, pp = p.tensor_parallel, p.pipeline_parallel
        _divisible("model.num_attention_heads", m.num_attention_heads, "parallel.tensor_parallel", tp,
                   "tensor parallelism splits attention heads evenly over ranks")
        _divisible("model.num_query_groups", m.num_query_groups, "parallel.tensor_parallel", tp,
                   "tensor parallelism splits KV heads evenly over ranks")
        _divisible("model.ffn_hidden_size", m.ffn_hidden_size, "parallel.tensor_parallel", tp,
                   "tensor parallelism splits the FFN evenly over ranks")
        _divisible("model.num_layers", m.num_layers, "parallel.pipeline_parallel", pp,
                   "each pipeline stage must hold the same number of layers")
        if p.virtual_pipeline is not None:
            _divisible("model.num_layers", m.num_layers,
                       "parallel.pipeline_parallel x parallel.virtual_pipeline",
                       pp * p.virtual_pipeline, "each virtual stage must hold the same number of layers")
            _divisible("train.eval_iters", t.eval_iters, "parallel.pipeline_parallel", pp,
                       "the interleaved schedule runs micro-batches in groups of the pipeline size")
        if p.sequence_parallel:
            _divisible("model.seq_length", m.seq_length, "parallel.tensor_parallel", tp,
                       "sequence parallelism splits the sequence evenly over TP ranks")
        _check(self.data.seq_length is None or self.data.seq_length <= m.seq_length,
               f"data.seq_length={self.data.seq_length} is longer than model.seq_length="
               f"{m.seq_length}: samples must fit the model's context")
        _check(t.eval_interval is None or self.data.kind != "indexed"
               or float(self.data.split.split(",")[1]) > 0,
               f"data.split={self.data.split!r} gives validation no share of the data but "
               f"train.eval_interval={t.eval_interval} asks for a validation loss: give the "
               "valid part a share (e.g. data.split='99,1,0') or set train.eval_interval=null")
        _check(not p.overlap_param_gather or self.optimizer.use_distributed_optimizer,
               "parallel.overlap_param_gather=True requires optimizer.use_distributed_optimizer="
               "True: only the distributed optimizer's sharded update has parameters to gather")
        _check(t.precision != "fp8" or m.transformer_impl != "local",
               "train.precision='fp8' requires Transformer Engine: "
               "model.transformer_impl='local' is not allowed with it (use auto or transformer_engine)")
        _check(not self.benchmarks.tasks or (tp, pp) == (1, 1),
               f"benchmarks.tasks needs parallel.tensor_parallel=1 and pipeline_parallel=1 (got "
               f"{tp} and {pp}): export a checkpoint and run xm2-eval on it instead")
        _check(not self.benchmarks.tasks or self.data.tokenizer_model is not None,
               "benchmarks.tasks needs data.tokenizer_model (the benchmarks are text)")
        dp = 1
        if world_size is not None:
            _check(isinstance(world_size, int) and world_size > 0,
                   f"world_size={world_size!r} must be a positive int")
            _divisible("world_size", world_size, "parallel.tensor_parallel x parallel.pipeline_parallel",
                       tp * pp, "the world must split into whole model-parallel groups")
            dp = p.data_parallel(world_size)
        sizes = [("train.global_batch_size", t.global_batch_size)]
        sizes += [(f"train.batch_size_schedule[{i}].global_batch_size", c.global_batch_size)
                  for i, c in enumerate(t.batch_size_schedule)]
        for key, size in sizes:
            _check(size % (t.micro_batch_size * dp) == 0,
                   f"{key}={size} is not divisible by train.micro_batch_size x data-parallel size "
                   f"= {t.micro_batch_size} x {dp} = {t.micro_batch_size * dp}: every step must be "
                   "whole micro-batches on every data-parallel rank")
            microbatches = size // (t.micro_batch_size * dp)
            _check(p.virtual_pipeline is None or microbatches % pp == 0,
                   f"{key}={size} gives {microbatches} micro-batches per data-parallel rank "
                   f"(train.micro_batch_size={t.micro_batch_size}, data-parallel size {dp}), not a "
                   f"multiple of parallel.pipeline_parallel={pp}: the interleaved schedule "
                   "(parallel.virtual_pipeline) runs micro-batches in groups of the pipeline size")
        return self
