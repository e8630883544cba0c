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


def _saved_for_backward(cfg) -> int:
    """Bytes of the distinct storages one forward pass (with the loss) keeps for its backward,
    parameters excluded: what a GPU holds between the forward and the backward pass."""
    model = build_training_state(cfg).model[0]
    b, s = cfg.train.micro_batch_size, cfg.model.seq_length
    tokens = torch.randint(0, cfg.model.vocab_size, (b, s))
    positions = torch.arange(s).expand(b, s)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(tokens, positions, None, labels=tokens)
    return sum(saved.values())


@pytest.mark.parametrize("attention", ["megatron", "sdpa"])
@pytest.mark.parametrize("shape", [
    [], ["model.hidden_size=128", "model.ffn_hidden_size=256", "model.seq_length=64"],
    ["model.num_attention_heads=8", "model.num_query_groups=4", "train.micro_batch_size=4"],
])
def test_activation_memory_matches_what_the_local_layers_keep(megatron_runtime, tiny_config,
                                                              attention, shape):
    """One layer's saved tensors (3 layers minus 1) equal the prediction to the byte; the
    whole forward pass (3 layers and the loss) within 2% (the token ids and loss mask the
    model also keeps are not modelled)."""
    common = [f"model.local_attention={attention}", *shape]
    one, three = (_saved_for_backward(tiny_config(f"model.num_layers={n}", *common))
                  for n in (1, 3))
    cfg = tiny_config("model.num_layers=3", *common)
    layout = Layout(micro_batch_size=cfg.train.micro_batch_size)
    (predicted,) = stage_memory(cfg.model, layout, 1, "fp32", vocab_rows=1024)
    assert (three - one) / 2 == pytest.approx(predicted.activations / 3, rel=1e-9)
    assert three == pytest.approx(predicted.activations + predicted.output, rel=0.02)
