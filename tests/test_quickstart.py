"""The quickstart pipeline, shortened (20 steps, ~300 documents per corpus): every artefact
exists and loads, training lowers the held-out loss of every source, the decay drew its SFT
share, the export's held-out loss equals the trainer's, and the benchmarks scored it."""

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
    assert main(["--out", str(out), "--steps", "20", "--max-docs", "300",
                 "--benchmark-limit", "20"]) == 0
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
    assert checkpoints == [f"iter_{s:07d}" for s in (4, 8, 12, 16, 20)]  # every validation
    weights = load_file(out / "hf" / "model.safetensors")
    assert weights["model.embed_tokens.weight"].shape == (8000, 256)
    for path in [*summary["training"]["plots"].values(), summary["heldout"]["plot"]]:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
    assert summary["export"]["sample"].startswith(summary["export"]["prompt"])


def test_training_lowers_heldout_loss(quickstart):
    _, summary = quickstart
    heldout = summary["heldout"]
    before, after = heldout["before_decay"], heldout["after_decay"]
    assert heldout["untrained_ptb"] > 9.5  # above ln(8000) = 9.0: µP's init is not uniform
    assert after["ptb"] < heldout["untrained_ptb"] - 3.0  # measured: 10.23 -> 6.80
    assert set(after) == {"english", "chinese", "code", "sft_mathematics", "sft_code", "ptb"}
    for name in ("english", "chinese", "code", "ptb"):  # the stable stage, steps 4 to 16
        assert heldout["by_step"]["16"][name] < heldout["by_step"]["4"][name] - 0.5
    for name in ("sft_mathematics", "sft_code"):  # first seen in the decay stage
        assert after[name] < before[name] - 0.2
    assert list(heldout["by_step"]) == ["0", "4", "8", "12", "16", "20"]
    assert heldout["by_step"]["16"] == before and heldout["by_step"]["20"] == after


def test_decay_stage_drew_its_sft_share(quickstart):
    _, summary = quickstart
    samples = 4 * 16  # steps 16-19 of 16 sequences
    assert abs(summary["training"]["decay_sft_share"] - 0.64) * samples <= 2


def test_export_heldout_loss_equals_the_trainers(quickstart):
    _, summary = quickstart
    heldout = summary["heldout"]
    assert heldout["export_ptb"] == pytest.approx(heldout["after_decay"]["ptb"], abs=1e-4)
    assert heldout["tokens"]["ptb"] == 64 * 256
    assert min(heldout["tokens"].values()) >= 256
    values = [v for losses in heldout["by_step"].values() for v in losses.values()]
    assert torch.isfinite(torch.tensor(values)).all()


def test_end_benchmarks_scored_the_export(quickstart):
    out, summary = quickstart
    bench = summary["benchmarks"]
    assert bench["limit"] == 20
    assert set(bench["accuracy"]) == {"ARC-e", "HellaSwag", "PIQA", "Winogrande"}
    assert all(value in {5.0 * k for k in range(21)} for value in bench["accuracy"].values())
    assert (out / "eval" / "tasks" / "arc_easy.yaml").is_file()  # lm_eval --include_path


def test_demo_corpora_were_decontaminated(quickstart):
    _, summary = quickstart
    found = summary["decontamination"]
    assert found["sets"] == 15 and found["items"] > 90_000  # every set xm2-eval scores, PTB
    assert found["kinds"]["sft"] == {"documents": 2471, "removed": 0, "found": {}}
