"""The planner's activation memory against what a GPU holds after a forward pass of the 1.2B
recipe's layers (Transformer Engine, bf16, flash attention, one 4,096-token sequence), with and
without full recomputation (skipped without CUDA and TE).

Measured: ``torch.cuda.memory_allocated`` after the forward pass minus before it, for 4 and for
8 layers. Their difference over 4 is one layer's activations (the loss inputs cancel out);
8 layers' figure is the whole prediction (layers plus the loss inputs).
"""

import os

import pytest
import torch

from tests.conftest import REPO
from xm2_megatron.config import load_config
from xm2_megatron.model import padded_vocab_size
from xm2_megatron.planning.memory import Layout, layer_activation_elements, output_activation_bytes
from xm2_megatron.training.state import build_training_state

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("megatron_runtime")]
TOLERANCE = 0.15  # TE's small saved tensors (rsigma, softmax statistics, RoPE) are not modelled


@pytest.fixture(autouse=True)
def _needs_te():
    pytest.importorskip("transformer_engine.pytorch")


def _config(layers: int, recompute: bool):
    return load_config(os.path.join(REPO, "recipes", "xmodel2_1p2b.yaml"), [
        f"model.num_layers={layers}", "model.transformer_impl=transformer_engine",
        "train.precision=bf16", "train.micro_batch_size=1", "train.global_batch_size=1",
        "train.batch_size_schedule=[]", f"train.recompute={str(recompute).lower()}"])


def _forward_bytes(cfg) -> int:
    """Bytes allocated by one forward pass (with the loss) and still held for the backward."""
    state = build_training_state(cfg)
    seq = cfg.model.seq_length
    tokens = torch.randint(0, cfg.model.vocab_size, (1, seq), device="cuda")
    positions = torch.arange(seq, device="cuda").unsqueeze(0)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    loss = state.model[0](tokens, positions, None, labels=tokens)
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - before
    del loss, state
    torch.cuda.empty_cache()
    return held


@pytest.mark.parametrize("recompute", [False, True])
def test_activation_memory_of_the_1p2b_layers(recompute):
    four, eight = (_forward_bytes(_config(n, recompute)) for n in (4, 8))
    cfg = _config(8, recompute)
    layout = Layout(recompute=recompute)
    tokens = cfg.model.seq_length
    per_layer = layer_activation_elements(cfg.model, layout) * tokens * 2  # bf16
    vocab_rows = padded_vocab_size(cfg.model.vocab_size, cfg.model.make_vocab_size_divisible_by, 1)
    output = output_activation_bytes(cfg.model, layout, vocab_rows, "bf16")
    print(f"recompute={recompute}: measured {(eight - four) / 4 / 2**20:.1f} MiB per layer "
          f"(predicted {per_layer / 2**20:.1f}), {eight / 2**30:.3f} GiB for 8 layers with the "
          f"loss inputs (predicted {(8 * per_layer + output) / 2**30:.3f})")
    assert (eight - four) / 4 == pytest.approx(per_layer, rel=TOLERANCE)
    assert eight == pytest.approx(8 * per_layer + output, rel=TOLERANCE)
