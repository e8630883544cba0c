"""Workarounds for megatron-core 0.16.1's optimizer checkpointing (see docs/checkpoints.md).

Each one is verified against 0.16.1 only: :func:`check_megatron_version` refuses another
version, so an upgrade re-verifies them (``tests/test_checkpoint.py`` and
``tests/distributed/test_checkpoint_resharding.py`` fail without them).
"""

from __future__ import annotations

import contextlib
import multiprocessing

import torch
from megatron.core import __version__ as MEGATRON_VERSION
from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.optimizer import distrib_optimizer
from megatron.core.optimizer import optimizer as mcore_optimizer
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

from xm2_megatron.runtime.children import children_die_with_this_process

VERIFIED_MEGATRON = "0.16.1"


def check_megatron_version(installed: str = MEGATRON_VERSION) -> None:
    """Raise unless the installed megatron-core is the one these workarounds were verified on."""
    if installed != VERIFIED_MEGATRON:
        raise RuntimeError(
            f"megatron-core {installed} is installed; xm2_megatron.checkpoint's optimizer-loading "
            f"workarounds are verified for {VERIFIED_MEGATRON} only (pinned in pyproject.toml): "
            "re-verify them (tests/test_checkpoint.py, tests/distributed) before upgrading")


def sub_optimizers(optimizer) -> list:
    """The optimizers inside megatron's ``ChainedOptimizer`` (or the optimizer itself)."""
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def uses_distributed_optimizer(optimizer) -> bool:
    return any(isinstance(s, DistributedOptimizer) for s in sub_optimizers(optimizer))


def init_empty_optimizer_states(optimizer) -> None:
    """A distributed optimizer that has not stepped yet has no AdamW state, and its
    ``state_dict`` (called while building the loading state dict) asserts one ``step``;
    megatron's dummy-state initialisation fills it (the values are then loaded over)."""
    for sub in sub_optimizers(optimizer):
        if isinstance(sub, DistributedOptimizer) and len(sub.optimizer.state) == 0:
            sub._init_optimizer_states_with_dummy_values()


@contextlib.contextmanager
def keep_states_missing_from_checkpoint(optimizer):
    """megatron copies every key of a parameter's inner-optimizer state from the loaded
    tensors, but torch AdamW's per-parameter ``step`` is restored from the param groups and is
    not among them (``KeyError: 'step'``): such keys keep the value they already have."""
    patched = [s for s in sub_optimizers(optimizer) if isinstance(s, DistributedOptimizer)]
    for sub in patched:
        original = sub._set_main_param_and_optimizer_states

        def set_states(model_param, tensors, sub=sub, original=original):
            current = sub._get_main_param_and_optimizer_states(model_param)
            original(model_param, {**current, **tensors})

        sub._set_main_param_and_optimizer_states = set_states
    try:
        yield
    finally:
        for sub in patched:
            del sub._set_main_param_and_optimizer_states


@contextlib.contextmanager
def distinct_param_groups():
    """megatron matches loaded param groups to the optimizer's by (wd_mult, lr_mult,
    is_expert_parallel, is_decoupled_lr) only, so groups that differ by their ``max_lr`` /
    ``min_lr`` override (µP's hidden group and the embedding group) get each other's state:
    match them by those two as well while loading."""
    modules = (mcore_optimizer, distrib_optimizer)
    original = mcore_optimizer.param_group_identifier_keys
    for module in modules:
        module.param_group_identifier_keys = (*original, "max_lr", "min_lr")
    try:
        yield
    finally:
        for module in modules:
            module.param_group_identifier_keys = original


def _with_bucket_padding(unpadded: torch.Tensor, buffer) -> torch.Tensor:
    """One gradient buffer's coalesced state re-laid at the buffer's offsets: each bucket's
    elements at ``bucket.offset``, the padding at each bucket's end as zeros."""
    padded = torch.zeros(buffer.grad_data.numel(), dtype=unpadded.dtype, device=unpadded.device)
    start = 0
    for bucket in buffer.buckets:
        padded[bucket.offset:bucket.offset + bucket.numel_unpadded] = (
            unpadded[start:start + bucket.numel_unpadded])
        start += bucket.numel_unpadded
    return padded


@contextlib.contextmanager
def bucket_offsets_fixed(optimizer):
    """megatron packs a gradient buffer's optimizer state bucket by bucket with each bucket's
    end padding left out (``get_parameter_state_dp_zero``), but the ``fully_reshardable``
    save slices it at the padded buffer's offsets: with more than one bucket
    (``parallel.overlap_grad_reduce``) every parameter after the first bucket is saved from
    the wrong place (fixed upstream after 0.16.1, Megatron-LM PR #5077). Put the padding
    back, so that the offsets are right."""
    patched = [s for s in sub_optimizers(optimizer) if isinstance(s, DistributedOptimizer)]
    for sub in patched:
        original = sub.get_parameter_state_dp_zero

        def padded_state(*args, sub=sub, original=original, **kwargs):
            state = original(*args, **kwargs)
            for gbuf_idx, by_dtype in (state or {}).items():
                if not isinstance(gbuf_idx, int):  # the "buckets_coalesced" flag
                    continue
                for world in by_dtype.values():
                    for key in ("param", "exp_avg", "exp_avg_sq"):
                        if key in world:
                            world[key] = _with_bucket_padding(world[key], sub.buffers[gbuf_idx])
            return state

        sub.get_parameter_state_dp_zero = padded_state
    try:
        yield
    finally:
        for sub in patched:
            del sub.get_parameter_state_dp_zero


def unshare_step_tensors(optimizer) -> None:
    """After a load megatron gives every parameter the same ``step`` tensor, which AdamW would
    then increment once per parameter: give each parameter its own copy."""
    for sub in sub_optimizers(optimizer):
        inner = getattr(sub, "optimizer", None)
        for param_state in getattr(inner, "state", {}).values():
            if isinstance(param_state.get("step"), torch.Tensor):
                param_state["step"] = param_state["step"].clone()


def load_optimizer_state(optimizer, state: dict) -> None:
    """``optimizer.load_state_dict`` with the workarounds above."""
    with keep_states_missing_from_checkpoint(optimizer):
        optimizer.load_state_dict(state)
    unshare_step_tensors(optimizer)


def start_async_results_queue() -> None:
    """megatron's async writer reports through a multiprocessing Manager that it starts with
    "spawn": a fresh interpreter that re-imports the trainer (~275 MB) and outlives a trainer
    killed with SIGKILL. Start that Manager forked instead, as a child that dies with this
    process (the queue is the same kind of proxy, so megatron uses it unchanged)."""
    if filesystem_async._results_queue is None:
        with children_die_with_this_process():
            manager = multiprocessing.get_context("fork").Manager()
        filesystem_async._results_queue = manager.Queue()
