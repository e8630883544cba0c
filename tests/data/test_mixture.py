"""Stage mixtures built with megatron's BlendedMegatronDatasetBuilder on real indexed datasets."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from xm2_megatron.config import ConfigError
from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess import preprocess
from xm2_megatron.data.mixture import (
    build_stage_datasets,
    check_data,
    stage_blend,
    stage_num_samples,
    stage_step_ranges,
)
from xm2_megatron.data.tokenizer import Tokenizer, train_tokenizer
from tests.data.conftest import mixture_config as _config
from tests.launch import run_trainer

pytestmark = pytest.mark.usefixtures("megatron_runtime")


def test_effective_weights(corpus):
    cfg = _config(corpus)
    stable = stage_blend(cfg.data.stages["stable"], cfg.data.root)
    assert stable.weights == pytest.approx([0.75, 0.25])
    assert stable.prefixes[0] == str(corpus / "web_text_document")
    decay = stage_blend(cfg.data.stages["decay"])
    assert decay.weights == pytest.approx([0.18, 0.18, 0.64 * 0.75, 0.64 * 0.25])
    assert sum(w for w, c in zip(decay.weights, decay.categories) if c) == pytest.approx(0.64)


def test_stage_lengths_follow_the_batch_schedule(corpus):
    cfg = _config(corpus)
    assert stage_step_ranges(cfg) == {"stable": range(0, 30), "decay": range(30, 40)}
    assert stage_num_samples(cfg) == {"stable": 20 * 8 + 10 * 16, "decay": 10 * 16}


@pytest.mark.parametrize("stage, expected", [
    ("stable", {0: 0.75, 1: 0.25}),
    ("decay", {0: 0.18, 1: 0.18, 2: 0.48, 3: 0.16}),
])
def test_blend_draws_in_proportion(corpus, stage, expected):
    cfg = _config(corpus)
    train, valid = build_stage_datasets(cfg, stage, train_samples=1000, valid_samples=40)
    assert len(train) == 1000 and len(valid) >= 40  # megatron rounds each valid share up
    counts = Counter(int(train[i]["dataset_id"]) for i in range(len(train)))
    for dataset_id, share in expected.items():
        # megatron's blend is exact up to one sample per dataset (not just within sampling error)
        assert abs(counts[dataset_id] - share * 1000) <= 1, (counts, expected)
    sample = train[0]
    assert sample["tokens"].shape == (32,) and sample["labels"].shape == (32,)
    assert (sample["tokens"][1:] == sample["labels"][:-1]).all()


def test_decay_sft_share(corpus):
    cfg = _config(corpus)
    train, _ = build_stage_datasets(cfg, "decay", train_samples=500)
    categories = stage_blend(cfg.data.stages["decay"]).categories
    sft = sum(categories[int(train[i]["dataset_id"])] is not None for i in range(len(train)))
    assert abs(sft / 500 - 0.64) <= 2 / 500


def test_missing_dataset_is_named(corpus):
    cfg = _config(corpus, "data.stages.stable.blend=[{prefix: nowhere_text_document}]")
    with pytest.raises(ConfigError, match=r"data.stages.stable.blend\[0\].prefix=.*nowhere_text_document.bin"):
        build_stage_datasets(cfg, "stable", 10)


def test_tokenizer_mismatch_is_refused(corpus, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("completely different text for another tokenizer\n" * 200)
    train_tokenizer([other], tmp_path / "other", vocab_size=350, allow_smaller_vocab=True)
    cfg = _config(corpus, f"data.tokenizer_model={tmp_path / 'other.model'}")
    with pytest.raises(ConfigError, match=r"blend\[0\].prefix=.*tokenized with .*tok.model"):
        build_stage_datasets(cfg, "stable", 10)


def test_missing_tokenizer_is_named(corpus):
    cfg = _config(corpus, "data.tokenizer_model=/nonexistent/t.model")
    with pytest.raises(ConfigError, match="data.tokenizer_model='/nonexistent/t.model': no such file"):
        build_stage_datasets(cfg, "stable", 10)


def test_trainer_checks_every_stage_before_building_the_model(corpus, tmp_path):
    _config(corpus)  # writes corpus/recipe.yaml
    result = run_trainer(corpus / "recipe.yaml", f"data.root={tmp_path}",
                         f"logging.output_dir={tmp_path}", timeout=120, env={})
    assert result.returncode == 2
    assert "xm2-megatron:" not in result.stdout  # failed before the model was built
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: data.stages.stable.blend[0].prefix=") and "not found" in line


# --- checks at start-up: damaged or mismatched datasets are one line naming the file ---------

@pytest.fixture
def copied(corpus, tmp_path):
    """A copy of the corpus (tokenizer and datasets) to damage."""
    for path in [corpus / "tok.model", *corpus.glob("*_text_document.*")]:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_whole_datasets_pass(corpus):
    check_data(_config(corpus))


@pytest.mark.parametrize("damage, match", [
    (lambda idx, _: _truncate(idx, idx.stat().st_size // 2),
     r"code_text_document\.idx is truncated or damaged \([\d,]+ bytes; reading it fails: buffer is smaller"),
    (lambda idx, _: _truncate(idx, 20), r"code_text_document\.idx is truncated or damaged"),
    (lambda idx, _: _truncate(idx, 0), r"code_text_document\.idx is not a megatron-core index"),
    (lambda idx, _: idx.write_bytes(b"not an index at all" * 10),
     r"code_text_document\.idx is not a megatron-core index \(bad header"),
    (lambda _, bin_: _truncate(bin_, bin_.stat().st_size - 2),
     (r"code_text_document\.bin is [\d,]+ bytes but .*code_text_document\.idx describes [\d,]+ "
      r"sequences \(300 documents\) of uint16 tokens in [\d,]+ bytes: the \.bin is truncated")),
    (lambda _, bin_: bin_.write_bytes(bin_.read_bytes() + b"\0\0"),
     r"code_text_document\.bin is .* the \.bin is longer than its index"),
], ids=["idx-half", "idx-header-only", "idx-empty", "idx-junk", "bin-short", "bin-long"])
def test_damaged_dataset_is_named(copied, damage, match):
    damage(copied / "code_text_document.idx", copied / "code_text_document.bin")
    with pytest.raises(DataError, match=match) as info:
        check_data(_config(copied))
    assert len(str(info.value).splitlines()) == 1


def test_vocabulary_larger_than_the_model_is_refused(corpus):
    vocab = Tokenizer(corpus / "tok.model").vocab_size
    check_data(_config(corpus, f"model.vocab_size={vocab}"))  # exactly the tokenizer's: fits
    with pytest.raises(DataError, match=(
            rf"web_text_document\.json: dataset web_text_document was tokenized with a {vocab}-token "
            rf"vocabulary \(data.tokenizer_model=.*tok.model\), larger than model.vocab_size="
            rf"{vocab - 1}: .* set model.vocab_size={vocab} or more")):
        check_data(_config(corpus, f"model.vocab_size={vocab - 1}"))


def test_trainer_refuses_a_truncated_index_before_building_the_model(copied, tmp_path_factory):
    idx = copied / "web_text_document.idx"
    _truncate(idx, idx.stat().st_size - 8)
    _config(copied)  # writes copied/recipe.yaml
    result = run_trainer(copied / "recipe.yaml",
                         f"logging.output_dir={tmp_path_factory.mktemp('runs')}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "xm2-megatron:" not in result.stdout  # failed before the model was built
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {idx} is truncated"), result.stderr


# --- the sample-index cache: keyed on each dataset's content, read pickle-free ---------------

def _read_all(dataset) -> int:
    return sum(int(dataset[i]["tokens"].sum() >= 0) for i in range(len(dataset)))


def test_a_prefix_remade_in_place_gets_fresh_indices(copied):
    cfg = _config(copied)
    train, _ = build_stage_datasets(cfg, "stable", train_samples=400)
    assert _read_all(train) == 400
    descriptions = set((copied / "cache").glob("*description.txt"))

    jsonl = copied / "fewer.jsonl"  # the same prefix re-made with a tenth of its documents
    jsonl.write_text("".join(json.dumps({"text": f"{i} short"}) + "\n" for i in range(30)))
    preprocess([jsonl], str(copied / "code"), str(copied / "tok.model"),
               append_eod=True, overwrite=True)
    train, _ = build_stage_datasets(cfg, "stable", train_samples=400)
    assert _read_all(train) == 400  # indices built for 300 documents would index past 30
    fresh = set((copied / "cache").glob("*description.txt")) - descriptions
    assert any("code_text_document" in path.read_text() for path in fresh)


def test_an_index_cache_file_of_python_objects_is_refused(copied):
    cfg = _config(copied)
    build_stage_datasets(cfg, "stable", train_samples=40)
    cached = sorted((copied / "cache").glob("*shuffle_index.npy"))[0]
    np.save(cached, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=rf"{cached}: an index-cache file that holds Python "
                                        r"objects, not indices: refused"):
        build_stage_datasets(cfg, "stable", train_samples=40)
