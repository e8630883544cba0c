"""Run megatron-core 0.16.1 on a CPU with gloo.

megatron-core assumes CUDA in a few places (listed in ``docs/cpu-runtime.md``): tensors
allocated on ``torch.cuda.current_device()`` or ``"cuda"``, the CUDA RNG state API,
streams, events and synchronisation, and type-string checks such as
``t.type() == "torch.cuda.FloatTensor"``. This module covers exactly those, in one place,
and is only ever applied when no GPU is present: it never touches a CUDA machine.

The device redirection is a ``TorchFunctionMode`` so that megatron's own source stays
untouched, and ``torch.cuda.current_device()`` is the CPU device: torch pauses a mode while
it handles a call, so the mode does not see what runs inside ``torch.autograd.backward``
(megatron's sequence-parallel linear allocates on ``current_device()`` in its backward).
The CUDA RNG is replaced by the CPU generator (the CPU *is* the device here), and
streams/events become no-ops (CPU execution is synchronous).
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

_CPU = torch.device("cpu")
_CUDA_TYPE_NAMES = {
    torch.float32: "torch.cuda.FloatTensor",
    torch.float16: "torch.cuda.HalfTensor",
    torch.bfloat16: "torch.cuda.BFloat16Tensor",
    torch.float64: "torch.cuda.DoubleTensor",
    torch.int64: "torch.cuda.LongTensor",
    torch.int32: "torch.cuda.IntTensor",
}

def _is_cuda_device(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, int) and not isinstance(device, bool)


class _CudaToCpuMode(TorchFunctionMode):
    """Sends every tensor megatron asks to place on CUDA to the CPU instead."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            tensor = args[0]
            return _CUDA_TYPE_NAMES.get(tensor.dtype, func(tensor))
        if func is torch.Tensor.cuda:
            return args[0]
        device = kwargs.get("device")
        if device is not None and _is_cuda_device(device):
            kwargs["device"] = "cpu"
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


class _NoOpStream:
    """Stands in for ``torch.cuda.Stream``: CPU execution is already ordered."""

    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, stream):
        pass

    def wait_event(self, event):
        pass

    def synchronize(self):
        pass

    def record_event(self, event=None):
        return event or _NoOpEvent()


class _NoOpEvent:
    """Stands in for ``torch.cuda.Event``."""

    def __init__(self, *args, **kwargs):
        pass

    def record(self, stream=None):
        pass

    def wait(self, stream=None):
        pass

    def synchronize(self):
        pass

    def query(self):
        return True


_undo: list = []  # what apply() changed, to put back in reverse order


def apply() -> None:
    """Install the CPU compatibility layer for this process (idempotent)."""
    if _undo:
        return
    if torch.cuda.is_available():
        raise RuntimeError("the CPU compatibility layer must not be applied on a CUDA machine")

    from megatron.core.tensor_parallel import random as mcore_random

    default_stream = _NoOpStream()
    patches = [(torch.cuda, name, replacement) for name, replacement in {
        "current_device": lambda: _CPU,
        "synchronize": lambda device=None: None,
        "current_stream": lambda device=None: default_stream,
        "default_stream": lambda device=None: default_stream,
        "Stream": _NoOpStream,
        "Event": _NoOpEvent,
        "stream": lambda stream=None: contextlib.nullcontext(),
        "get_rng_state": lambda device="cuda": torch.get_rng_state(),
        "set_rng_state": lambda state, device="cuda": torch.set_rng_state(state),
        "manual_seed": lambda seed: torch.default_generator.manual_seed(seed),
    }.items()]
    patches += [
        (mcore_random, "_get_cuda_rng_state",
         lambda device="cuda", clone=False, graph_safe=False: torch.get_rng_state()),
        (mcore_random, "_set_cuda_rng_state",
         lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)),
    ]
    for module, name, replacement in patches:
        _undo.append((module, name, getattr(module, name)))
        setattr(module, name, replacement)
    mode = _CudaToCpuMode()
    mode.__enter__()
    _undo.append((None, None, mode))


def undo() -> None:
    """Remove the CPU compatibility layer (what ``apply`` changed goes back as it was)."""
    while _undo:
        module, name, original = _undo.pop()
        if module is None:
            original.__exit__(None, None, None)
        else:
            setattr(module, name, original)
