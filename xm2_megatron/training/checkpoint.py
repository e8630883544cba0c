"""Atomic, resharding training checkpoints on megatron-core's ``dist_checkpointing``.

A checkpoint directory holds one folder per saved step and a ``latest`` marker::

    <dir>/latest                  the name of the newest complete step folder
    <dir>/iter_0000300/           dist checkpoint: model, optimizer (``fully_reshardable``),
                                  and in ``common.pt`` the scheduler and the train state
    <dir>/iter_0000300/rng.pt     every rank's RNG states (restored only at the same layout)
    <dir>/iter_0000300/config.yaml  the resolved config

A save writes everything into ``<dir>/.tmp_iter_<step>_<id>/``; once every rank is done, rank 0
fsyncs it, renames it to ``iter_<step>`` and only then replaces ``latest`` (temp file + rename),
so a save killed at any point leaves the previous checkpoint complete and ``latest`` on it.
Leftover ``.tmp_*`` entries are ignored by loads and removed by the next save.

Model and optimizer are loaded through ``dist_checkpointing.load``, so a checkpoint saved at
one TP/PP/DP layout loads at another. See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
import yaml
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.dist_checkpointing.strategies.common import (
    COMMON_STATE_FNAME,
    TorchCommonLoadStrategy,
)
from megatron.core.optimizer import distrib_optimizer
from megatron.core.optimizer import optimizer as mcore_optimizer
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from megatron.core.utils import unwrap_model
from torch.distributed.checkpoint.api import CheckpointException

from xm2_megatron.config import ConfigError

LATEST = "latest"
RNG_FILE = "rng.pt"
CONFIG_FILE = "config.yaml"
TMP_PREFIX = ".tmp_"
logger = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^iter_(\d{7,})$")
# the distributed optimizer's canonical per-parameter layout: loads at any TP/PP/DP layout
_OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def step_dir_name(step: int) -> str:
    """The folder name of the checkpoint of ``step``: ``iter_0000300``."""
    return f"iter_{step:07d}"


# ----------------------------------------------------------------------------- finding


def is_complete(path: Path) -> bool:
    """A step folder that a finished save renamed into place."""
    path = Path(path)
    return (
        _STEP_DIR.match(path.name) is not None
        and (path / "metadata.json").is_file()
        and (path / COMMON_STATE_FNAME).is_file()
        and (path / RNG_FILE).is_file()
    )


def complete_checkpoints(directory: str | Path) -> list[Path]:
    """The complete step folders in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def _marked_checkpoint(directory: Path) -> Path | None:
    try:
        name = (directory / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not _STEP_DIR.match(name) or not is_complete(directory / name):
        return None
    return directory / name


def find_checkpoint(path: str | Path) -> Path | None:
    """The step folder to resume from: ``path`` itself if it is one, else the folder named by
    ``path/latest``, else (marker missing, unreadable or stale) the newest complete folder;
    None when there is none."""
    path = Path(path)
    if is_complete(path):
        return path
    marked = _marked_checkpoint(path)
    if marked is not None:
        return marked
    found = complete_checkpoints(path)
    return found[-1] if found else None


def read_checkpoint_config(step_dir: str | Path) -> dict:
    """The resolved config a checkpoint was saved with (plain dicts)."""
    return yaml.safe_load((Path(step_dir) / CONFIG_FILE).read_text())


# ----------------------------------------------------------------------------- state dicts


def _sub_optimizers(optimizer) -> list:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _uses_distributed_optimizer(optimizer) -> bool:
    return any(isinstance(s, DistributedOptimizer) for s in _sub_optimizers(optimizer))


def _sharded_state_dict(model: list, optimizer, is_loading: bool) -> dict:
    """Model chunks (``model`` / ``model0..``) and the optimizer state built on them."""
    chunks = unwrap_model(model)
    if len(chunks) == 1:
        state = {"model": chunks[0].sharded_state_dict()}
    else:
        state = {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(
            state, is_loading=is_loading, metadata=_OPTIMIZER_METADATA
        )
    return state


def _load_model_state(model: list, state: dict) -> None:
    chunks = unwrap_model(model)
    if len(chunks) == 1:
        chunks[0].load_state_dict(state["model"])
    else:
        for i, chunk in enumerate(chunks):
            chunk.load_state_dict(state[f"model{i}"])


def _init_empty_optimizer_states(optimizer) -> None:
    """A distributed optimizer that has not stepped yet has no AdamW state, and its
    ``state_dict`` (called while building the loading state dict) asserts one ``step``;
    megatron's dummy-state initialisation fills it (the values are then loaded over)."""
    for sub in _sub_optimizers(optimizer):
        if isinstance(sub, DistributedOptimizer) and len(sub.optimizer.state) == 0:
            sub._init_optimizer_states_with_dummy_values()


@contextlib.contextmanager
def _keep_states_missing_from_checkpoint(optimizer):
    """megatron 0.16.1 copies every key of a parameter's inner-optimizer state from the loaded
    tensors, but torch AdamW's per-parameter ``step`` is restored from the param groups and is
    not among them (``KeyError: 'step'``): such keys keep the value they already have."""
    patched = [s for s in _sub_optimizers(optimizer) if isinstance(s, DistributedOptimizer)]
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
def _distinct_param_groups():
    """megatron 0.16.1 matches loaded param groups to the optimizer's by (wd_mult, lr_mult,
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


def _unshare_step_tensors(optimizer) -> None:
    """After a load megatron gives every parameter the same ``step`` tensor, which AdamW would
    then increment once per parameter: give each parameter its own copy."""
    for sub in _sub_optimizers(optimizer):
        inner = getattr(sub, "optimizer", None)
        for param_state in getattr(inner, "state", {}).values():
            if isinstance(param_state.get("step"), torch.Tensor):
                param_state["step"] = param_state["step"].clone()


def _load_optimizer_state(optimizer, state: dict) -> None:
    with _keep_states_missing_from_checkpoint(optimizer):
        optimizer.load_state_dict(state)
    _unshare_step_tensors(optimizer)


# ----------------------------------------------------------------------------- RNG


def _layout() -> dict:
    return {
        "world_size": torch.distributed.get_world_size(),
        "tensor_parallel": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_parallel": parallel_state.get_pipeline_model_parallel_world_size(),
    }


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _save_rng(step_dir: Path) -> None:
    """Gather every rank's RNG states into ``rng.pt`` (written by rank 0)."""
    rank = torch.distributed.get_rank()
    states = [None] * torch.distributed.get_world_size() if rank == 0 else None
    torch.distributed.gather_object(_rng_state(), states, dst=0)
    if rank == 0:
        torch.save({"layout": _layout(), "ranks": states}, step_dir / RNG_FILE)


def _load_rng(step_dir: Path) -> bool:
    """Restore this rank's RNG states if the checkpoint has this layout; True if it did."""
    saved = torch.load(step_dir / RNG_FILE, weights_only=False)
    if saved["layout"] != _layout():
        return False
    _set_rng_state(saved["ranks"][torch.distributed.get_rank()])
    return True


# ----------------------------------------------------------------------------- files


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _remove(path: Path) -> None:
    """Delete a folder without ever leaving a partial one under a step folder's name."""
    doomed = path.with_name(f"{TMP_PREFIX}delete_{path.name}_{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_leftovers(directory: Path) -> None:
    """Temp folders and files of saves or deletions that were killed."""
    for path in directory.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _write_marker(directory: Path, name: str) -> None:
    tmp = directory / f"{TMP_PREFIX}{LATEST}_{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / LATEST)
    _fsync(directory)


def _prune(directory: Path, keep_last: int, newest: Path) -> None:
    """Delete complete checkpoints beyond the last ``keep_last`` (never ``newest``)."""
    old = [p for p in complete_checkpoints(directory) if p != newest]
    for path in old[: max(len(old) - (keep_last - 1), 0)]:
        _remove(path)


def _commit(tmp: Path, final: Path, keep_last: int) -> None:
    """Rank 0: make a fully written temp folder the newest checkpoint."""
    _fsync_tree(tmp)
    if final.exists():
        _remove(final)
    os.rename(tmp, final)
    _fsync(final.parent)
    _write_marker(final.parent, final.name)
    _prune(final.parent, keep_last, final)


# ----------------------------------------------------------------------------- save / load


def _broadcast(value):
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _prepare_tmp(directory: Path, step: int) -> Path:
    """Rank 0 clears leftovers and creates the temp folder; every rank gets its path."""
    tmp = None
    if torch.distributed.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(directory)
        tmp = directory / f"{TMP_PREFIX}{step_dir_name(step)}_{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    return Path(_broadcast(None if tmp is None else str(tmp)))


def save_checkpoint(
    directory: str | Path,
    step: int,
    model: list,
    optimizer,
    scheduler,
    train_state: dict,
    config_dict: dict,
    keep_last: int,
    async_queue: AsyncCallsQueue | None = None,
) -> Path:
    """Save ``directory/iter_<step>`` atomically on every rank; returns its path.

    ``train_state`` (plain values, the same on every rank: stage, samples consumed per stage,
    skipped updates, W&B run id, ...) is stored with ``step`` added.

    With ``async_queue`` (megatron's ``AsyncCallsQueue``) a forked process writes the tensors
    and the folder is committed when the queue finalises the request: call
    ``async_queue.maybe_finalize_async_calls()`` every step and ``async_queue.close()`` at the
    end, on every rank. A new save first waits for the previous one.
    """
    if async_queue is not None:
        async_queue.maybe_finalize_async_calls(blocking=True)
    directory = Path(directory)
    final = directory / step_dir_name(step)
    tmp = _prepare_tmp(directory, step)
    state = _sharded_state_dict(model, optimizer, is_loading=False)
    state["scheduler"] = scheduler.state_dict()
    state["train_state"] = {**copy.deepcopy(train_state), "step": step}
    request = dist_checkpointing.save(
        state,
        str(tmp),
        async_sharded_save=async_queue is not None,
        content_metadata={"distributed_optimizer": _uses_distributed_optimizer(optimizer)},
    )
    _save_rng(tmp)
    if torch.distributed.get_rank() == 0:
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config_dict, sort_keys=False))

    def finalize():
        torch.distributed.barrier()
        if torch.distributed.get_rank() == 0:
            _commit(tmp, final, keep_last)
        torch.distributed.barrier()

    if request is None:
        finalize()
    else:
        request.add_finalize_fn(finalize)
        async_queue.schedule_async_request(request)
    return final


def _check_optimizer_kind(step_dir: Path, optimizer) -> None:
    """The distributed and the plain optimizer store different state: fail clearly."""
    common = TorchCommonLoadStrategy().load_common(step_dir)
    saved = dist_checkpointing.load_content_metadata(preloaded_state_dict=common) or {}
    current = _uses_distributed_optimizer(optimizer)
    if saved.get("distributed_optimizer", current) != current:
        raise CheckpointLoadError(
            f"{step_dir} was saved with optimizer.use_distributed_optimizer="
            f"{saved['distributed_optimizer']} but this run uses {current}: the optimizer "
            "state of one cannot be loaded into the other"
        )


class CheckpointLoadError(ConfigError, ValueError):
    """A checkpoint that cannot be loaded into this run (one line, exit 2 from the CLI)."""


def load_checkpoint(path: str | Path, model: list, optimizer=None, scheduler=None) -> dict | None:
    """Load the checkpoint :func:`find_checkpoint` picks under ``path`` into the model and, if
    given, the optimizer and scheduler (at any TP/PP/DP layout); restore the RNG states if
    the layout is the saved one. Returns the saved train state, or None (nothing loaded)
    when there is no checkpoint."""
    found = find_checkpoint(path) if torch.distributed.get_rank() == 0 else None
    found = _broadcast(None if found is None else str(found))
    if found is None:
        return None
    step_dir = Path(found)
    if optimizer is not None:
        _check_optimizer_kind(step_dir, optimizer)
    with _distinct_param_groups():
        if optimizer is not None:
            _init_empty_optimizer_states(optimizer)
        sharded = _sharded_state_dict(model, optimizer, is_loading=True)
        try:
            state = dist_checkpointing.load(sharded, str(step_dir))
        except (Exception, CheckpointException) as e:  # torch's is a BaseException
            detail = " ".join(str(e).split())[:300]
            raise CheckpointLoadError(f"{step_dir}: cannot load it, the checkpoint is incomplete, "
                                      f"damaged or of another model ({type(e).__name__}: {detail})"
                                      ) from None
        _load_model_state(model, state)
        if optimizer is not None:
            _load_optimizer_state(optimizer, state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if not _load_rng(step_dir) and torch.distributed.get_rank() == 0:
        logger.warning("%s was saved at another parallel layout: RNG states not restored", step_dir)
    return copy.deepcopy(state["train_state"])
