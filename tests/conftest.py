"""Shared fixtures: megatron-core's parallel state for in-process (world size 1) tests."""

import os

import pytest
import torch

from xm2_megatron.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
