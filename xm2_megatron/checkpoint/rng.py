"""Every rank's RNG states in ``rng.pt``: tensors and plain numbers only, so the file is read
with ``torch.load(weights_only=True)`` and can never run code. States are restored only at the
layout they were saved at (a resharded resume draws fresh streams)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from megatron.core import parallel_state, tensor_parallel



def _layout() -> dict:
    return {
        "world_size": torch.distributed.get_world_size(),
        "tensor_parallel": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_parallel": parallel_state.get_pipeline_model_parallel_world_size(),
    }


def _python_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss}


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def rng_state() -> dict:
    """This process's RNG states (Python, numpy, torch, CUDA, megatron's tracker)."""
    state = {
        "python": _python_state(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss_next"]))
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def save_rng(path: Path) -> None:
    """Gather every rank's RNG states into ``path`` (written by rank 0 into the save's temporary
    folder, which the save commits whole; a collective call)."""
    rank = torch.distributed.get_rank()
    states = [None] * torch.distributed.get_world_size() if rank == 0 else None
    torch.distributed.gather_object(rng_state(), states, dst=0)
    if rank == 0:
        torch.save({"layout": _layout(), "ranks": states}, path)


def load_rng(path: Path) -> bool:
    """Restore this rank's RNG states if ``path`` has this layout; True if it did."""
    saved = torch.load(path, weights_only=True)
    if saved["layout"] != _layout():
        return False
    set_rng_state(saved["ranks"][torch.distributed.get_rank()])
    return True
