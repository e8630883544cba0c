"""Import: HF Granite/Llama -> trainer checkpoint (round trip bitwise, the trainer resumes with the
HF model's loss), bf16, untied output, vocabulary padding, and the error cases."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from xm2_megatron.config import load_config
from xm2_megatron.checkpoint import find_step, stored_shapes
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.convert.export import export_checkpoint
from xm2_megatron.convert.importer import import_hf
from xm2_megatron.data.stream import StageDataStream

from .conftest import RECIPE, VOCAB, run_trainer

DISTRIBUTED = ["optimizer.use_distributed_optimizer=true"]  # tiny.yaml uses the plain one


@pytest.fixture(scope="module")
def imported(exported, tmp_path_factory):
    """The export imported back at TP2 x PP2 with the tiny recipe's training settings."""
    out = tmp_path_factory.mktemp("import") / "ckpt"
    import_hf(exported, out, tensor_parallel=2, pipeline_parallel=2, recipe=RECIPE,
              overrides=[*DISTRIBUTED])
    return out


@pytest.mark.distributed  # the export of the checkpoint trained by 4 processes
def test_round_trip_is_bitwise(exported, imported, tokenizer_model, tmp_path):
    step = find_step(imported)
    assert step.name == "iter_0000000"
    assert stored_shapes(step)["embedding.word_embeddings.weight"] == (VOCAB, 64)  # no padding rows
    export_checkpoint(imported, tmp_path / "again", tokenizer=tokenizer_model)
    before, after = load_file(exported / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]) for k in before)
    assert (exported / "config.json").read_text() == (tmp_path / "again" / "config.json").read_text()


def _hf_loss(model, microbatches) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in microbatches:
            logits = model(batch["tokens"]).logits.double()
            losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                                       reduction="none")
            total += float((losses * batch["loss_mask"].flatten()).sum())
            count += int(batch["loss_mask"].sum())
    return total / count


@pytest.mark.distributed  # the export of the checkpoint trained by 4 processes
def test_trainer_resumes_with_the_hf_loss(exported, imported, tmp_path):
    config = find_step(imported) / "config.yaml"
    overrides = ["parallel.tensor_parallel=1", "parallel.pipeline_parallel=1", "train.steps=2",
                 f"logging.output_dir={tmp_path}"]
    run_trainer([str(config), *overrides])
    (metrics,) = tmp_path.glob("*/metrics.jsonl")
    records = [json.loads(line) for line in metrics.open()]
    losses = [r["loss"] for r in records if "loss" in r]
    cfg = load_config(config, overrides)
    hf = AutoModelForCausalLM.from_pretrained(exported, local_files_only=True).eval()
    expected = _hf_loss(hf, StageDataStream(cfg, 0, 1).microbatches(0)[1])
    assert abs(losses[0] - expected) <= 1e-5 * expected, (losses, expected)
    fresh = _fresh_optimizer_losses(cfg, imported, 2)  # same weights, optimizer never stepped
    assert all(abs(a - b) <= 1e-6 * b for a, b in zip(losses, fresh)), (losses, fresh)


def _fresh_optimizer_losses(cfg, checkpoint, steps):
    """Losses of ``steps`` training steps from the checkpoint's weights with a new optimizer."""
    from xm2_megatron.checkpoint import load_checkpoint
    from xm2_megatron.runtime import single_process_runtime
    from xm2_megatron.training.state import build_training_state
    from xm2_megatron.training.step import train_step

    with single_process_runtime(cfg.train.seed):
        model, optimizer, scheduler = build_training_state(cfg)
        load_checkpoint(checkpoint, model)
        optimizer.reload_model_params()
        stream = StageDataStream(cfg, 0, 1)
        return [train_step(model, optimizer, scheduler, stream.microbatches(s)[1]).loss
                for s in range(steps)]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A random untied Llama (GQA, vocab 4,000) saved in bf16."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False, rms_norm_eps=1e-5)
    out = tmp_path_factory.mktemp("llama") / "llama"
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    return out


def test_llama_bf16_untied_with_restored_padding(llama, tokenizer_model, tmp_path):
    import_hf(llama, tmp_path / "ckpt", recipe=RECIPE, overrides=[
        "model.make_vocab_size_divisible_by=128", *DISTRIBUTED])
    step = find_step(tmp_path / "ckpt")
    shapes = stored_shapes(step)
    assert shapes["embedding.word_embeddings.weight"] == shapes["output_layer.weight"] == (4096, 64)
    assert "precision: bf16" in (step / "config.yaml").read_text()
    export_checkpoint(tmp_path / "ckpt", tmp_path / "hf", tokenizer=tokenizer_model)
    source, granite = load_file(llama / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    assert source.keys() == granite.keys() and "lm_head.weight" in granite
    assert all(granite[k].dtype == torch.bfloat16 and torch.equal(source[k], granite[k]) for k in source)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["embedding_multiplier"], config["residual_multiplier"], config["logits_scaling"],
            config["attention_multiplier"]) == (1.0, 1.0, 1.0, 0.25)
    ids = torch.tensor([[5, 17, 900, 3999, 42, 7, 7, 1000]])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)(ids).logits
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-5


def test_errors(llama, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(llama, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(ConversionError, match=r"'model.layers.0.mlp.gate_proj.weight' has shape "
                                              r"\(96, 64\) but config.json implies \(128, 64\)"):
        import_hf(bad, tmp_path / "out", recipe=RECIPE, overrides=DISTRIBUTED)
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "gpt2", "n_embd": 64}))
    with pytest.raises(ConversionError, match="model_type='gpt2' is not supported"):
        import_hf(bad, tmp_path / "out", recipe=RECIPE, overrides=DISTRIBUTED)
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").unlink()
    with pytest.raises(ConversionError, match="has no model.safetensors"):
        import_hf(bad, tmp_path / "out", recipe=RECIPE, overrides=DISTRIBUTED)
    with pytest.raises(ConversionError, match="does not exist"):
        import_hf(tmp_path / "nope", tmp_path / "out", recipe=RECIPE, overrides=DISTRIBUTED)
    with pytest.raises(ConversionError, match=r"parallel.tensor_parallel=3"):
        import_hf(llama, tmp_path / "out", tensor_parallel=3, recipe=RECIPE, overrides=DISTRIBUTED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
    # a model-only checkpoint: either optimizer kind starts fresh from it
    assert import_hf(llama, tmp_path / "plain", recipe=RECIPE).name == "iter_0000000"
