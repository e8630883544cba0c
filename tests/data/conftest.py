"""A small real corpus for the mixture and stream tests: a tokenizer and four indexed datasets
made with the project's own tools, and a two-stage recipe over them."""

import json
from pathlib import Path

import pytest

from xm2_megatron.config import load_config
from xm2_megatron.data.preprocess import preprocess
from xm2_megatron.data.tokenizer import train_tokenizer

REPO = Path(__file__).parents[2]

SOURCES = {
    "web": "The committee met on Tuesday to discuss the river bridge and the new school. ",
    "code": "def area(width, height):\n    return width * height  # rectangle\n",
    "math": "Question: Tom has 3 apples and buys 4 more. How many? Answer: 3 + 4 = 7. ",
    "chat": "User: name a colour of the sky. Assistant: The sky is often blue at noon. ",
}


@pytest.fixture(scope="session")
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


def mixture_config(root, *overrides):
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
extends: {REPO / 'recipes' / 'cpu_quickstart.yaml'}
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


