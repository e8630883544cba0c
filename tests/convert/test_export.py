"""Export: a TP2 x PP2 trainer checkpoint -> stock transformers Granite, logits and generation
parity, the tokenizer, bf16, and the error cases."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from xm2_megatron.checkpoint import find_step, load_for_inference, stored_shapes
from xm2_megatron.convert.export import export_checkpoint
from xm2_megatron.errors import CheckpointError
from xm2_megatron.runtime import single_process_runtime
from xm2_megatron.data.tokenizer import Tokenizer

from tests.full_disk import error_lines, needs_namespaces, run_on_full_disk

from .conftest import REPO, VOCAB

pytestmark = pytest.mark.distributed  # every test uses the checkpoint trained by 4 processes

MIXED = ("The river ran past the old mill in 1887, and 12 sacks of flour were counted.\n"
         "今天天气很好，我们一起去公园散步。\n"
         "def area(width, height):\n    return width * height  # 面积\n"
         "x = [0x1F, 3.14159]   \t  tabs and   runs of spaces ☃ 😀\n")


class MegatronModel:
    """The trainer's own model (megatron GPTModel) loaded from a checkpoint at TP1/PP1."""

    def __init__(self, checkpoint):
        loaded = load_for_inference(checkpoint, "fp32")
        self.cfg, self.model = loaded.config, [loaded.model]

    @torch.no_grad()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        return self.model[0](ids, positions, None)[..., : self.cfg.model.vocab_size]

    def greedy(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        for _ in range(new_tokens):
            ids = torch.cat([ids, self.logits(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return ids


@pytest.fixture(scope="module")
def hf_model(exported):
    return AutoModelForCausalLM.from_pretrained(exported, local_files_only=True).eval()


def test_folder_is_stock_granite(exported, hf_model):
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer.model", "tokenizer_config.json"]
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["GraniteForCausalLM"] and "auto_map" not in config
    assert type(hf_model).__name__ == "GraniteForCausalLM"
    # tiny.yaml: µP, width_mult 64/32 = 2, 4 layers, head_dim 16
    assert (config["embedding_multiplier"], config["residual_multiplier"],
            config["logits_scaling"], config["attention_multiplier"]) == (12.0, 0.7, 2.0, 0.25)
    assert config["vocab_size"] == VOCAB and config["tie_word_embeddings"] is True
    tensors = load_file(exported / "model.safetensors")
    assert "lm_head.weight" not in tensors and tensors["model.embed_tokens.weight"].shape == (VOCAB, 64)
    assert hf_model.lm_head.weight.data_ptr() == hf_model.model.embed_tokens.weight.data_ptr()


def test_logits_and_greedy_generation_match_the_trainer(trained_checkpoint, exported, hf_model):
    tokenizer = AutoTokenizer.from_pretrained(exported, local_files_only=True)
    ids = torch.tensor([tokenizer.encode(MIXED)[:44]])
    with single_process_runtime(seed=1):
        megatron = MegatronModel(trained_checkpoint)
        reference = megatron.logits(ids)
        generated = megatron.greedy(ids[:, :24], 20)
    with torch.no_grad():
        logits = hf_model(ids).logits
    error = ((logits - reference).abs().max() / reference.abs().max()).item()
    assert logits.shape == reference.shape == (1, 44, VOCAB)
    assert error <= 1e-4, error
    hf_generated = hf_model.generate(ids[:, :24], max_new_tokens=20, do_sample=False)
    assert hf_generated.shape == (1, 44)
    assert hf_generated.tolist() == generated.tolist()


def test_tokenizer_matches_training(exported, tokenizer_model):
    hf = AutoTokenizer.from_pretrained(exported, local_files_only=True)
    sp = Tokenizer(tokenizer_model)
    assert (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (0, 1, 2, None)
    texts = [MIXED, *MIXED.split("\n"), " leading space", "trailing  ", "  0x41\n\n\n", "12345678",
             "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ 😀 ﬁ", "中英mixed混合text"]
    ids = [sp.encode(t) for t in texts]
    assert [hf.encode(t) for t in texts] == ids
    assert any(sp.id_to_piece(i).startswith("<0x") for i in ids[0])  # byte fallback exercised
    assert [hf.decode(i) for i in ids] == texts


def test_bf16_export(trained_checkpoint, exported, tmp_path):
    export_checkpoint(trained_checkpoint, tmp_path / "bf16", dtype="bf16")
    fp32, bf16 = load_file(exported / "model.safetensors"), load_file(tmp_path / "bf16" / "model.safetensors")
    assert all(bf16[k].dtype == torch.bfloat16 and torch.equal(bf16[k], fp32[k].bfloat16()) for k in fp32)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_checkpoint_keys_are_transformer_engine_names(trained_checkpoint):
    """megatron stores local-spec layers under TE's names, so a GPU (TE) checkpoint has the keys
    this CPU exporter requests."""
    keys = stored_shapes(find_step(trained_checkpoint))
    assert "decoder.layers.self_attention.linear_qkv.layer_norm_weight" in keys
    assert "decoder.layers.mlp.linear_fc1.layer_norm_weight" in keys
    assert not any("input_layernorm" in k or "pre_mlp_layernorm" in k for k in keys)


def _copy(checkpoint, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(checkpoint, copy)
    return copy, find_step(copy)


def test_errors(trained_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export_checkpoint(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        export_checkpoint(tmp_path / "empty", tmp_path / "out")
    copy, step = _copy(trained_checkpoint, tmp_path)
    config = (step / "config.yaml").read_text()
    (step / "config.yaml").write_text(config.replace("ffn_hidden_size: 160", "ffn_hidden_size: 192"))
    with pytest.raises(CheckpointError, match=r"linear_fc1.weight' has shape \(4, 320, 64\) but "
                                              r"config.yaml \(model.\*\) implies \(4, 384, 64\)"):
        export_checkpoint(copy, tmp_path / "out")
    (step / "config.yaml").write_text(config.replace("tie_embeddings: true", "tie_embeddings: false"))
    with pytest.raises(CheckpointError, match="'output_layer.weight' is missing"):
        export_checkpoint(copy, tmp_path / "out")
    (step / "config.yaml").write_text(config)
    for shard in step.glob("__1_*.distcp"):
        shard.unlink()
    with pytest.raises(CheckpointError, match="incomplete or damaged"):
        export_checkpoint(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_cli_one_error_line(trained_checkpoint, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    result = subprocess.run([sys.executable, "tools/convert_to_hf.py", "--load", str(trained_checkpoint),
                             "--save", str(tmp_path / "taken")], capture_output=True, text=True, cwd=REPO,
                            check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    expected = (f"error: the export folder {tmp_path / 'taken'} already exists and is not empty: "
                "choose a new folder")
    assert errors == [expected], result.stderr


@needs_namespaces
def test_a_full_disk_is_one_line_and_leaves_nothing(trained_checkpoint, tmp_path):
    disk = tmp_path / "disk"  # the small files fit, the weights do not
    result, left = run_on_full_disk(disk, "64k", [
        sys.executable, "tools/convert_to_hf.py", "--load", trained_checkpoint,
        "--save", disk / "hf"], cwd=REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_lines(result) == [f"error: no space left on device in {disk}: hf was not "
                                   "written"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and left == []
