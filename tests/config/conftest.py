"""Shared paths and helpers for the tests of xm2_megatron.config."""

from __future__ import annotations

from pathlib import Path

import pytest

from xm2_megatron.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
OUR_RECIPES = ["xmodel2_1p2b", "tiny_54m", "nano_6m", "cpu_quickstart"]
NANO = ROOT / "recipes" / "nano_6m.yaml"
QUICK = ROOT / "recipes" / "cpu_quickstart.yaml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path, overrides=(), world_size=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides, world_size=world_size)
    return str(info.value)
