"""Stage mixtures built with megatron's BlendedMegatronDatasetBuilder on real indexed datasets."""

import json
from collections import Counter

import pytest

from xm2_megatron.config import ConfigError, load_config
from xm2_megatron.data.mixture import (
    build_stage_datasets,
    stage_blend,
    stage_num_samples,
    stage_step_ranges,
)
from xm2_megatron.data.preprocess import preprocess
from xm2_megatron.data.tokenizer import train_tokenizer

pytestmark = pytest.mark.usefixtures("megatron_runtime")

SOURCES = {
    "web": "The committee met on Tuesday to discuss the river bridge and the new school. ",
    "code": "def area(width, height):\n    return width * height  # rectangle\n",
    "math": "Question: Tom has 3 apples and buys 4 more. How many? Answer: 3 + 4 = 7. ",
    "chat": "User: name a colour of the sky. Assistant: The sky is often blue at noon. ",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tokenizer and one indexed dataset per source, made with the project's own tools."""
    root = tmp_path_factory.mktemp("mixture")
    text = root / "all.txt"
    text.write_text("\n".join(body * 3 for body in SOURCES.values()) * 20)
    train_tokenizer([text], root / "tok", vocab_size=400, allow_smaller_vocab=True)
    for name, body in SOURCES.items():
        jsonl = root / f"{name}.jsonl"
        with open(jsonl, "w") as f:
            for i in range(300):
                f.write(json.dumps({"text": f"{i} {body * (1 + i % 3)}"}) + "\n")
        preprocess([jsonl], str(root / name), str(root / "tok.model"), append_eod=True)
    return root


def _config(root, *overrides):
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
extends: {(__import__('pathlib').Path(__file__).parents[2] / 'recipes' / 'cpu_quickstart.yaml')}
model: {{seq_length: 32}}
train: {{steps: 40, global_batch_size: 8, micro_batch_size: 4, batch_size_schedule: [{{step: 20, global_batch_size: 16}}]}}
data:
  kind: indexed
  root: {root}
  tokenizer_model: {root / 'tok.model'}
  split: "90,10,0"
  cache_dir: {root / 'cache'}
  stages:
    stable:
      start_step: 0
      blend:
        - {{prefix: web_text_document, weight: 3}}
        - {{prefix: code_text_document, weight: 1}}
    decay:
      start_step: 30
      sft_share: 0.64
      blend:
        - {{prefix: web_text_document, weight: 1}}
        - {{prefix: code_text_document, weight: 1}}
        - {{prefix: math_text_document, category: mathematics, weight: 3}}
        - {{prefix: chat_text_document, category: knowledge}}
""")
    return load_config(recipe, list(overrides))


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
