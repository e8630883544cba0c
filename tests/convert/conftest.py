"""Shared conversion fixtures: a small model trained a few steps by the trainer at TP2 x PP2
and saved, and its Hugging Face export (the tokenizer: ``tests/conftest.py``)."""

import subprocess
from pathlib import Path

import pytest

from tests import launch
from tests.conftest import TOKENIZER_VOCAB

REPO = Path(__file__).parents[2]
RECIPE = REPO / "tests" / "convert" / "tiny.yaml"
VOCAB = TOKENIZER_VOCAB  # the tiny recipe's model.vocab_size: not a multiple of 128


def run_trainer(args: list[str], nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m xm2_megatron.train ARGS`` alone or under torchrun; fails loudly."""
    return launch.run_trainer(*args, nproc=nproc, timeout=timeout, check=True)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, tokenizer_model) -> Path:
    """The tiny model trained 4 steps by the trainer at TP2 x PP2 (4 processes) and saved."""
    root = tmp_path_factory.mktemp("trained")
    run_trainer([str(RECIPE), "parallel.tensor_parallel=2", "parallel.pipeline_parallel=2",
                 f"checkpoint.dir={root / 'ckpt'}", f"logging.output_dir={root / 'runs'}",
                 f"data.tokenizer_model={tokenizer_model}"], nproc=4)
    return root / "ckpt"


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_checkpoint) -> Path:
    """The trained checkpoint exported with the library (tokenizer from the run's config)."""
    from xm2_megatron.convert.export import export_checkpoint

    out = tmp_path_factory.mktemp("export") / "hf"
    export_checkpoint(trained_checkpoint, out)
    return out
