"""The quickstart pipeline, shortened (20 steps, ~300 documents per corpus): every artefact
exists and loads, training lowers the held-out loss, the decay drew its SFT share, and the
export's held-out loss equals the trainer's."""

import json

import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file

from xm2_megatron.quickstart import main
from xm2_megatron.data.preprocess import read_dataset_metadata
from xm2_megatron.data.tokenizer import file_sha256

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tokenizer_sha256(summary):
    return file_sha256(summary["tokenizer"]["path"])


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    assert main(["--out", str(out), "--steps", "20", "--max-docs", "300"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_artefacts_exist_and_load(quickstart):
    out, summary = quickstart
    tokenizer = spm.SentencePieceProcessor(model_file=summary["tokenizer"]["path"])
    assert tokenizer.get_piece_size() == summary["tokenizer"]["vocab_size"] == 8000
    for name, tokens in summary["dataset_tokens"].items():
        metadata = read_dataset_metadata(str(out / "data" / "indexed" / f"{name}_text_document"))
        assert metadata["tokens"] == tokens > 0
        assert metadata["tokenizer"]["sha256"] == tokenizer_sha256(summary)
    checkpoints = sorted(p.name for p in (out / "checkpoints").glob("iter_*"))
    assert checkpoints == ["iter_0000016", "iter_0000020"]  # the decay start and the end
    weights = load_file(out / "hf" / "model.safetensors")
    assert weights["model.embed_tokens.weight"].shape == (8000, 80)
    for path in summary["training"]["plots"].values():
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
    assert summary["export"]["sample"].startswith(summary["export"]["prompt"])


def test_training_lowers_heldout_loss(quickstart):
    _, summary = quickstart
    loss = summary["heldout"]["loss"]
    assert loss["untrained"] > 12.0  # ln(8000) = 9.0: µP's init is far from uniform
    assert loss["after_decay"] < loss["untrained"] - 4.0
    assert loss["after_decay"] < loss["before_decay"]  # the decay stage lowers held-out loss


def test_decay_stage_drew_its_sft_share(quickstart):
    _, summary = quickstart
    samples = 4 * 16  # steps 16-19 of 16 sequences
    assert abs(summary["training"]["decay_sft_share"] - 0.64) * samples <= 2


def test_export_heldout_loss_equals_the_trainers(quickstart):
    _, summary = quickstart
    loss = summary["heldout"]["loss"]
    assert loss["export"] == pytest.approx(loss["after_decay"], abs=1e-4)
    assert summary["heldout"]["tokens"] > 30_000
    assert torch.isfinite(torch.tensor(list(loss.values()))).all()
