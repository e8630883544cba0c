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
