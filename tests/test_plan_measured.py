"""The planner's static memory against what megatron-core allocates on this CPU: the model's
parameter storage, DDP's gradient buffers, and the optimizer's master weights and Adam moments
after one step, for the tiny parity model (world size 1)."""

import pytest
import torch

from xm2_megatron.planning.memory import Layout, stage_memory
from xm2_megatron.training import build_training_state

TOLERANCE = 0.01  # megatron pads each gradient bucket to a multiple of 128 elements


def _storages(tensors) -> dict[int, int]:
    """Distinct storages of ``tensors``: data pointer -> bytes."""
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def _measured(state) -> dict[str, int]:
    model_params = [p for chunk in state.model for p in chunk.parameters()]
    params = _storages(model_params)
    grads = sum(buffer.grad_data.numel() * buffer.grad_data.element_size()
                for chunk in state.model for buffer in chunk.buffers)
    for chunk in state.model:
        chunk.zero_grad_buffer()
        for p in chunk.parameters():
            p.main_grad.fill_(1e-3)
    inner = state.optimizer.optimizer
    assert state.optimizer.step()[0]
    masters = _storages(p for group in inner.param_groups for p in group["params"])
    moments = sum(t.numel() * t.element_size() for s in inner.state.values()
                  for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
    own_masters = sum(nbytes for ptr, nbytes in masters.items() if ptr not in params)
    return {"parameters": sum(params.values()), "gradients": grads,
            "optimizer": own_masters + moments}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("distributed", [False, True])
def test_static_memory_matches_megatrons_allocations(megatron_runtime, tiny_config, precision,
                                                     distributed):
    cfg = tiny_config(f"train.precision={precision}",
                      f"optimizer.use_distributed_optimizer={str(distributed).lower()}")
    measured = _measured(build_training_state(cfg))
    (predicted,) = stage_memory(cfg.model, Layout(distributed_optimizer=distributed), 1,
                                precision, vocab_rows=1024)
    for part, size in measured.items():
        assert size == pytest.approx(getattr(predicted, part), rel=TOLERANCE), part
