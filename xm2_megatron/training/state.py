"""The training state, built once: model chunks, megatron DDP, the optimizer with µP learning
rates and the WSD scheduler, from the config (megatron's parallel state must be initialised)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.distributed.finalize_model_grads import finalize_model_grads
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.optimizer import (
    OptimizerConfig,
    ParamGroupOverride,
    ParamKey,
    get_megatron_optimizer,
    get_standard_config_overrides,
)
from megatron.core.optimizer.optimizer import MegatronOptimizer
from megatron.core.transformer.module import Float16Module

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.model import build_model
from xm2_megatron.model.builder import param_dtype
from xm2_megatron.model.mup import mup_multipliers
from xm2_megatron.optim.schedule import WSDScheduler


def wrap_with_ddp(cfg: ExperimentConfig, chunks: list[torch.nn.Module]) -> list[DistributedDataParallel]:
    """megatron DDP around each chunk; grads reduced in fp32 into a contiguous buffer, bucket
    by bucket during the backward pass with ``parallel.overlap_grad_reduce`` (and the updated
    parameters gathered by forward pre-hooks with ``parallel.overlap_param_gather``).

    bf16 chunks first go into megatron's ``Float16Module``, as in megatron's ``get_model``:
    it casts the parameters the local spec creates in fp32 (its torch norms) to bf16 and
    returns the last stage's output in fp32. The µP hooks sit on submodules and still fire.
    """
    chunks = [Float16Module(chunk.config, chunk) if chunk.config.bf16 else chunk
              for chunk in chunks]
    parallel = cfg.parallel
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=parallel.overlap_grad_reduce,
        overlap_param_gather=parallel.overlap_param_gather,
        bucket_size=parallel.ddp_bucket_size,
        use_distributed_optimizer=cfg.optimizer.use_distributed_optimizer,
    )
    wrapped = [
        DistributedDataParallel(config=chunk.config, ddp_config=ddp_config, module=chunk)
        for chunk in chunks
    ]
    config = wrapped[0].config
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = _per_chunk(wrapped, "no_sync")
    if parallel.overlap_grad_reduce:  # the pipeline schedules start each chunk's reduce
        config.grad_sync_func = _per_chunk(wrapped, "start_grad_sync")
    return wrapped


def _per_chunk(chunks: list, method: str):
    """``chunk.method`` of the one chunk, or the list of them (megatron's convention)."""
    methods = [getattr(chunk, method) for chunk in chunks]
    return methods[0] if len(methods) == 1 else methods


@contextlib.contextmanager
def parameters_gathered(model: list[DistributedDataParallel]) -> Iterator[None]:
    """With ``parallel.overlap_param_gather`` the distributed optimizer's updated shards reach
    the other ranks only in the next forward pass; a checkpoint or a validation pass inside
    this block sees every parameter up to date (megatron's forward pre-hooks are off in it)."""
    hooked = [chunk for chunk in model if getattr(chunk, "use_forward_hook", False)]
    for chunk in hooked:
        chunk.disable_forward_pre_hook(param_sync=True)
    try:
        yield
    finally:
        for chunk in hooked:
            chunk.enable_forward_pre_hook()


def optimizer_config(cfg: ExperimentConfig) -> OptimizerConfig:
    """megatron's OptimizerConfig of a recipe: AdamW with the paper's betas and decay."""
    opt = cfg.optimizer
    dtype = param_dtype(cfg.train.precision)
    return OptimizerConfig(
        optimizer="adam",
        lr=opt.lr,
        min_lr=opt.min_lr,
        weight_decay=opt.weight_decay,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_eps=opt.adam_eps,
        clip_grad=opt.clip_grad,
        bf16=dtype == torch.bfloat16,
        params_dtype=dtype,
        use_distributed_optimizer=opt.use_distributed_optimizer,
    )


def mup_param_overrides(cfg: ExperimentConfig) -> dict[ParamKey, ParamGroupOverride]:
    """megatron's standard overrides (no weight decay on norms and biases) plus µP's
    ``lr / width_mult`` for every weight that ``apply_mup`` marked ``mup_hidden``."""
    config = optimizer_config(cfg)
    overrides = get_standard_config_overrides(config)
    hidden_lr = mup_multipliers(cfg.model, cfg.mup).hidden_lr
    if hidden_lr != 1.0:
        overrides[ParamKey(attr="mup_hidden")] = ParamGroupOverride(
            max_lr=config.lr * hidden_lr, min_lr=config.min_lr * hidden_lr
        )
    return overrides


def build_optimizer(
    cfg: ExperimentConfig, model: list[DistributedDataParallel]
) -> tuple[MegatronOptimizer, WSDScheduler]:
    """The megatron optimizer with µP groups and the WSD scheduler that drives every group's
    lr (without a scheduler megatron steps every group at the base lr)."""
    optimizer = get_megatron_optimizer(optimizer_config(cfg), model, mup_param_overrides(cfg))
    model[0].config.grad_scale_func = optimizer.scale_loss
    scheduler = WSDScheduler(
        optimizer, cfg.schedule, cfg.optimizer.lr, cfg.optimizer.min_lr, cfg.optimizer.weight_decay
    )
    return optimizer, scheduler


@dataclass
class TrainingState:
    """What a training step updates: this rank's model chunks (in megatron DDP), the
    optimizer and the learning-rate scheduler."""

    model: list[DistributedDataParallel]
    optimizer: MegatronOptimizer
    scheduler: WSDScheduler

    def __iter__(self):
        """``model, optimizer, scheduler = state``."""
        return iter((self.model, self.optimizer, self.scheduler))

    def release(self) -> None:
        """Let the model, the optimizer and the process groups they hold be freed once the run
        drops them (a process that trains again, as wind-tunnel trials do, would otherwise keep
        every run's state and gloo threads).

        The distributed optimizer's fp32 shards are views of the parameters, so through the
        autograd graph (which Python's garbage collector cannot see) they hold the gradient
        accumulators, whose hooks hold DDP; the model's config holds the optimizer's
        ``scale_loss``, closing the cycle. megatron's rotary embedding caches ``forward`` per
        instance in a class-level ``lru_cache``.
        """
        for chunk in self.model:
            chunk.config.grad_scale_func = None
        RotaryEmbedding.forward.cache_clear()


def build_training_state(cfg: ExperimentConfig) -> TrainingState:
    """Model -> Float16Module (bf16) -> DDP -> optimizer -> scheduler for this rank."""
    model = wrap_with_ddp(cfg, build_model(cfg))
    optimizer, scheduler = build_optimizer(cfg, model)
    return TrainingState(model, optimizer, scheduler)
