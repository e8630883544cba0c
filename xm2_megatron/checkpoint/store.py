"""Save and load training state atomically on megatron-core's ``dist_checkpointing``.

A save writes everything into ``<dir>/.iter_<step>.<id>.tmp/``; once every rank is done,
rank 0 fsyncs it, renames it to ``iter_<step>`` and only then replaces ``latest``, so a save
killed at any point leaves the previous checkpoint complete and ``latest`` on it. Model and
optimizer go through ``dist_checkpointing`` (the optimizer ``fully_reshardable``), so a
checkpoint saved at one TP/PP/DP layout loads at another. The optimizer and scheduler are
optional on both sides: a model-only checkpoint (a Hugging Face import) starts a fresh
optimizer. See docs/checkpoints.md.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import yaml
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy
from megatron.core.utils import unwrap_model
from torch.distributed.checkpoint.api import CheckpointException

from xm2_megatron import atomic
from xm2_megatron.checkpoint import megatron_fixes as fixes
from xm2_megatron.checkpoint.format import (
    CONFIG_FILE,
    LATEST,
    RNG_FILE,
    complete_checkpoints,
    find_checkpoint,
    is_complete,
    step_dir_name,
    step_of,
)
from xm2_megatron.checkpoint.rng import load_rng, save_rng
from xm2_megatron.checkpoint.save_failure import failure_agreed, remove_leftovers
from xm2_megatron.errors import CheckpointError, describe
from xm2_megatron.runtime import broadcast_from_rank0
from xm2_megatron.runtime.children import children_die_with_this_process

logger = logging.getLogger(__name__)
# the distributed optimizer's canonical per-parameter layout: loads at any TP/PP/DP layout
_OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def _sharded_state_dict(model: list, optimizer, is_loading: bool) -> dict:
    """Model chunks (``model`` / ``model0..``) and the optimizer state built on them."""
    chunks = unwrap_model(model)
    if len(chunks) == 1:
        state = {"model": chunks[0].sharded_state_dict()}
    else:
        state = {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}
    if optimizer is not None:
        with fixes.bucket_offsets_fixed(optimizer):
            state["optimizer"] = optimizer.sharded_state_dict(
                state, is_loading=is_loading, metadata=_OPTIMIZER_METADATA)
    return state


def _load_model_state(model: list, state: dict) -> None:
    chunks = unwrap_model(model)
    names = ["model"] if len(chunks) == 1 else [f"model{i}" for i in range(len(chunks))]
    for chunk, name in zip(chunks, names):
        chunk.load_state_dict(state[name])


def _prune(directory: Path, keep_last: int, newest: Path) -> None:
    """Delete complete checkpoints beyond the last ``keep_last`` (never ``newest``)."""
    old = [p for p in complete_checkpoints(directory) if p != newest]
    for path in old[: max(len(old) - (keep_last - 1), 0)]:
        atomic.remove_tree(path)


def commit(tmp: Path, final: Path, keep_last: int) -> None:
    """Rank 0: make a fully written temporary folder the newest checkpoint."""
    atomic.commit_directory(tmp, final)
    atomic.write_text(final.parent / LATEST, final.name + "\n")
    _prune(final.parent, keep_last, final)


def _prepare_tmp(directory: Path, step: int) -> Path:
    """Rank 0 clears leftovers and creates the temporary folder; every rank gets its path."""
    tmp = None
    if torch.distributed.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        remove_leftovers(directory)
        tmp = atomic.temporary_name(directory / step_dir_name(step))
        tmp.mkdir()
    return Path(broadcast_from_rank0(None if tmp is None else str(tmp)))


def save_checkpoint(directory: str | Path, step: int, model: list, optimizer, scheduler,
                    train_state: dict, config_dict: dict, keep_last: int,
                    async_queue: AsyncCallsQueue | None = None) -> Path:
    """Save ``directory/iter_<step>`` atomically on every rank; returns its path.

    ``train_state`` (plain values, the same on every rank) is stored with ``step`` added;
    ``optimizer`` and ``scheduler`` may be None (a model-only checkpoint). With
    ``async_queue`` a forked process writes the tensors and the folder is committed when the
    queue finalises the request (call ``finalize_saves`` every step and
    ``close`` at the end, on every rank); a new save first waits for the previous one.
    A failed save raises ``CheckpointError`` (``DiskFullError`` for a full device) on every
    rank, its partial files removed and the previous checkpoint kept.
    """
    fixes.check_megatron_version()
    directory = Path(directory)
    if async_queue is not None:
        finalize_saves(async_queue, directory, blocking=True)
        fixes.start_async_results_queue()
    final = directory / step_dir_name(step)
    tmp = _prepare_tmp(directory, step)
    state = _sharded_state_dict(model, optimizer, is_loading=False)
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    state["train_state"] = {**copy.deepcopy(train_state), "step": step}
    content = {"has_optimizer": optimizer is not None,
               "distributed_optimizer": optimizer is not None
               and fixes.uses_distributed_optimizer(optimizer)}
    with failure_agreed(directory):  # megatron raises a failed write on every rank
        request = dist_checkpointing.save(state, str(tmp),
                                          async_sharded_save=async_queue is not None,
                                          content_metadata=content)
    with failure_agreed(directory):  # megatron wants an empty folder: these come after
        save_rng(tmp / RNG_FILE)
        if torch.distributed.get_rank() == 0:
            (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config_dict, sort_keys=False))

    def finalize():
        torch.distributed.barrier()
        with failure_agreed(directory):  # its exchange is the closing barrier
            if torch.distributed.get_rank() == 0:
                commit(tmp, final, keep_last)

    if request is None:
        finalize()
    else:
        request.add_finalize_fn(finalize)
        with children_die_with_this_process():  # the forked writer dies with this trainer
            async_queue.schedule_async_request(request)
    return final


def finalize_saves(async_queue: AsyncCallsQueue, directory: str | Path,
                   blocking: bool = False) -> None:
    """Commit the background saves that are done (``blocking``: wait for all), on every rank;
    a failed one is a ``CheckpointError`` (``DiskFullError``) with its partial files removed.
    With nothing pending this is free (no collective call)."""
    if not async_queue.get_num_unfinalized_calls():
        return
    with failure_agreed(Path(directory)):
        async_queue.maybe_finalize_async_calls(blocking=blocking)


class DamagedCheckpointError(CheckpointError):
    """A step folder whose files cannot be read or do not fit this model."""


def _content_metadata(step_dir: Path) -> dict:
    common = TorchCommonLoadStrategy().load_common(step_dir)
    return dist_checkpointing.load_content_metadata(preloaded_state_dict=common) or {}


def _check_optimizer_kind(step_dir: Path, saved: dict, optimizer) -> None:
    """The distributed and the plain optimizer store different state: fail clearly."""
    current = fixes.uses_distributed_optimizer(optimizer)
    if saved.get("distributed_optimizer", current) != current:
        raise CheckpointError(
            f"{step_dir} was saved with optimizer.use_distributed_optimizer="
            f"{saved['distributed_optimizer']} but this run uses {current}: the optimizer "
            "state of one cannot be loaded into the other")


def _candidates(path: Path) -> list[Path]:
    """Step folders to try, best first: ``path`` itself if it is one; else the one
    :func:`find_checkpoint` picks, then every older complete one, newest first."""
    if is_complete(path):
        return [path]
    first = find_checkpoint(path)
    if first is None:
        return []
    older = [p for p in reversed(complete_checkpoints(path)) if step_of(p) < step_of(first)]
    return [first, *older]


def load_checkpoint(path: str | Path, model: list, optimizer=None, scheduler=None,
                    restore_rng: bool = True) -> dict | None:
    """Load the newest loadable checkpoint under ``path`` (a checkpoint directory, or one
    step folder) into the model and, if given and saved, the optimizer and scheduler, at any
    TP/PP/DP layout; with ``restore_rng`` restore the RNG states if the layout is the saved
    one. A damaged step folder is skipped with a warning for the next older one. Returns the
    saved train state, or None (nothing loaded) when there is no checkpoint; raises
    ``CheckpointError`` when none loads. A model-only checkpoint leaves the optimizer fresh
    (its main parameters reloaded from the loaded model) and the scheduler at its start."""
    fixes.check_megatron_version()
    found = _candidates(Path(path)) if torch.distributed.get_rank() == 0 else None
    candidates = [Path(p) for p in broadcast_from_rank0(None if found is None else [str(p) for p in found])]
    failures = []
    for step_dir in candidates:
        try:
            return _load_step(step_dir, model, optimizer, scheduler, restore_rng)
        except DamagedCheckpointError as e:
            failures.append(str(e))
            if torch.distributed.get_rank() == 0 and step_dir != candidates[-1]:
                logger.warning("skipping %s", e)
    if failures:
        raise CheckpointError(failures[0] if len(failures) == 1 else
                              f"no checkpoint under {path} loads: " + "; ".join(failures))
    return None


def _load_step(step_dir: Path, model: list, optimizer, scheduler, restore_rng: bool) -> dict:
    try:
        saved = _content_metadata(step_dir)
    except Exception as e:
        raise DamagedCheckpointError(f"{step_dir}: cannot read it ({describe(e)})") from None
    with_optimizer = optimizer is not None and saved.get("has_optimizer", True)
    if with_optimizer:
        _check_optimizer_kind(step_dir, saved, optimizer)
    with fixes.distinct_param_groups():
        if with_optimizer:
            fixes.init_empty_optimizer_states(optimizer)
        sharded = _sharded_state_dict(model, optimizer if with_optimizer else None, is_loading=True)
        try:
            state = dist_checkpointing.load(sharded, str(step_dir))
            _load_model_state(model, state)
        except (Exception, CheckpointException) as e:  # torch's is a BaseException
            raise DamagedCheckpointError(
                f"{step_dir}: cannot load it: the checkpoint is incomplete or damaged, or of "
                f"another model ({describe(e)})") from None
        if with_optimizer:
            fixes.load_optimizer_state(optimizer, state["optimizer"])
        elif optimizer is not None:
            optimizer.reload_model_params()
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        try:
            restored = load_rng(step_dir / RNG_FILE)
        except Exception as e:  # weights_only refuses anything but tensors and plain values
            raise DamagedCheckpointError(f"{step_dir / RNG_FILE}: not an RNG-state file of "
                                         f"tensors and numbers, refused ({describe(e)})") from None
        if not restored and torch.distributed.get_rank() == 0:
            logger.warning("%s was saved at another parallel layout: RNG states not restored",
                           step_dir)
    return copy.deepcopy(state["train_state"])
