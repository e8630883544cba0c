"""Shared fixtures: megatron-core's parallel state for in-process (world size 1) tests, and a
small tokenizer trained on the demo corpora."""

import json
import os
from pathlib import Path

import pytest
import torch

from xm2_megatron.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_VOCAB = 4000  # not a multiple of 128: the conversion tests check the padding


@pytest.fixture(scope="session")
def megatron_runtime():
    """torch.distributed (gloo or NCCL) and megatron's parallel state, world size 1."""
    from xm2_megatron.runtime import init_runtime, shutdown_runtime

    runtime = init_runtime(1, 1, seed=1234, environ={})
    yield runtime
    shutdown_runtime()


@pytest.fixture
def tiny_config():
    """A small Xmodel-2-shaped config (GQA, tied, µP on) built on the parity recipe."""

    def make(*overrides: str):
        path = os.path.join(REPO, "tests", "distributed", "parity.yaml")
        return load_config(path, list(overrides))

    return make


@pytest.fixture(scope="session")
def tokenizer_model(tmp_path_factory) -> Path:
    """A 4,000-piece Unigram tokenizer trained on a sample of the English, Chinese and code corpora."""
    from xm2_megatron.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tokenizer")
    sample = root / "sample.txt"
    with open(sample, "w", encoding="utf-8") as out:
        for name in ("english.jsonl", "chinese.jsonl", "code.jsonl"):
            size = 0
            with open(os.path.join(REPO, "data", "demo", name), encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if i % 40 == 0 and size < 60_000:
                        text = json.loads(line)["text"]
                        out.write(text + "\n")
                        size += len(text.encode())
    train_tokenizer([sample], root / "tok", TOKENIZER_VOCAB, num_threads=1)
    return root / "tok.model"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
