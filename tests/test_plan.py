"""The planner's memory and time model against hand-computed figures for the 1.2B recipe."""

import pytest

from xm2_megatron.config import load_config
from xm2_megatron.planning.layouts import plan, tokens_per_batch_size, why_infeasible
from xm2_megatron.planning.memory import Layout, layer_activation_elements, stage_memory
from xm2_megatron.tools.plan import main as plan_main

PARAMETERS = 1_251_755_520  # recipes/xmodel2_1p2b.yaml's header
VOCAB = 65_280


@pytest.fixture(scope="module")
def cfg():
    return load_config("xmodel2_1p2b")


@pytest.mark.parametrize("precision, dp, distributed, bytes_per_param", [
    ("bf16", 1, False, 18), ("bf16", 8, False, 18), ("bf16", 8, True, 6 + 12 / 8),
    ("bf16", 32, True, 6 + 12 / 32), ("fp32", 1, False, 16), ("fp32", 8, True, 8 + 8 / 8)])
def test_static_memory_is_megatrons_bytes_per_parameter(cfg, precision, dp, distributed,
                                                        bytes_per_param):
    """megatron-core's published bytes per parameter (its distributed-optimizer guide): bf16
    weights with fp32 gradients 18, 6 + 12 / DP distributed; fp32 16, 8 + 8 / DP."""
    (stage,) = stage_memory(cfg.model, Layout(data_parallel=dp, distributed_optimizer=distributed),
                            1, precision, VOCAB)
    static = stage.parameters + stage.gradients + stage.optimizer
    assert static == pytest.approx(PARAMETERS * bytes_per_param)


def test_pipeline_stages_split_the_layers_and_the_last_keeps_a_tied_embedding_copy(cfg):
    first, last = stage_memory(cfg.model, Layout(pipeline_parallel=4), 8, "bf16", VOCAB)
    embedding, per_layer = VOCAB * 1536, 23_989_248
    assert first.parameters / 2 == 12 * per_layer + embedding
    assert last.parameters / 2 == 12 * per_layer + 1536 + embedding
    tp2 = stage_memory(cfg.model, Layout(tensor_parallel=2), 1, "bf16", VOCAB)[0]
    norms = 2 * 1536
    assert tp2.parameters / 2 == 48 * ((per_layer - norms) / 2 + norms) + embedding / 2 + 1536


def test_layer_activations_per_token(cfg):
    """4 norm tensors of d, q and the output (24 x 64), k and v (8 x 64), fc1 (2 x 3840) and
    SwiGLU's output (3840): 21,760 elements per token; TP2 with SP halves all of them."""
    assert layer_activation_elements(cfg.model, Layout()) == 21_760
    assert layer_activation_elements(cfg.model, Layout(tensor_parallel=2,
                                                       sequence_parallel=True)) == 10_880
    no_sp = layer_activation_elements(cfg.model, Layout(tensor_parallel=2))
    assert no_sp == 4 * 1536 + (21_760 - 4 * 1536) / 2
    assert layer_activation_elements(cfg.model, Layout(recompute=True)) == 1536


@pytest.mark.parametrize("virtual, first_stage_chunks", [(1, 4), (2, 2 * 3 + 4 + 1)])
def test_pipeline_keeps_the_warmup_micro_batches_in_flight(cfg, virtual, first_stage_chunks):
    """1F1B: the first of 4 stages holds 4 micro-batches; interleaved with V = 2 it holds
    2 (PP - 1) + (V - 1) PP + 1 chunks of 48 / 8 layers: 1 + (PP - 1) / (PP V) times the
    activations of all 48 layers (Korthikanti et al. 2022)."""
    layout = Layout(pipeline_parallel=4, virtual_pipeline=virtual, data_parallel=8)
    first, last = stage_memory(cfg.model, layout, 30, "bf16", VOCAB)
    assert first.micro_batches_in_flight == first_stage_chunks
    layer = 21_760 * 4096 * 2
    assert first.activations == pytest.approx(48 * layer * (1 + 3 / (4 * virtual)) if virtual > 1
                                              else 48 * layer)
    assert last.micro_batches_in_flight == (1 if virtual == 1 else 4 + 1)
    assert last.output == 4096 * (2 * 1536 * 2 + VOCAB * (2 + 4))


def test_time_to_train_follows_the_batch_schedule(cfg):
    assert tokens_per_batch_size(cfg) == {480: 2000 * 480, 960: 380_470 * 960}
    layout = Layout(pipeline_parallel=2, data_parallel=16)
    p = plan(cfg, layout, VOCAB, tokens_per_gpu_s=10_000)
    step = 960 * 4096 / (32 * 10_000) * (1 + 1 / 60)  # 60 micro-batches per rank
    assert p.step_seconds == pytest.approx(step) and p.bubble == pytest.approx(1 / 60)
    warmup = 2000 * 480 * 4096 / (32 * 10_000) * (1 + 1 / 30)
    assert p.train_hours == pytest.approx((warmup + 380_470 * step) / 3600)


@pytest.mark.parametrize("layout, reason", [
    (Layout(tensor_parallel=16), "TP 16 does not divide 24 heads / 8 KV groups"),
    (Layout(pipeline_parallel=5), "PP 5 x V 1 does not divide 48 layers"),
    (Layout(data_parallel=32, micro_batch_size=2), "global batch 480 is not a multiple"),
    (Layout(pipeline_parallel=16, virtual_pipeline=4, data_parallel=2), "does not divide 48"),
    (Layout(pipeline_parallel=8, virtual_pipeline=2, data_parallel=40), "12 micro-batches per DP"),
])
def test_invalid_layouts_say_why(cfg, layout, reason):
    assert reason in why_infeasible(cfg, layout, gpus_per_node=8)


def test_cli_lists_layouts_that_fit(capsys):
    assert plan_main(["xmodel2_1p2b", "--gpus", "8", "--gpu-memory", "12GiB", "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("xmodel2_1p2b on 8 GPUs of 12.0 GiB: ")
    rows = out[4:]
    assert len(rows) == 3 and all(float(r.split("|")[1].split()[4]) <= 12.0 for r in rows)
