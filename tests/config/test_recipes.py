"""The shipped recipes' numbers, packaged recipe names and the `xm2-config` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xm2_megatron.cli import run_cli
from xm2_megatron.config import (
    RECIPES_DIR,
    BatchChange,
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    MupConfig,
    config_to_dict,
    load_config,
    packaged_recipes,
    resolve_recipe,
)
from xm2_megatron.config.checks import ConfigFileNotFoundError
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.data.jsonl import DataError
from xm2_megatron.errors import UserError

from .conftest import NANO, OUR_RECIPES, QUICK, RECIPES, ROOT, write


def tied_params(m: ModelConfig) -> int:
    d, hd = m.hidden_size, m.head_dim
    heads, kv = m.num_attention_heads, m.num_query_groups
    layer = 2 * d + d * heads * hd + 2 * d * kv * hd + heads * hd * d + 3 * d * m.ffn_hidden_size
    return m.vocab_size * d + m.num_layers * layer + d


# --- recipes ------------------------------------------------------------------------------

def test_all_four_recipes_exist():
    assert {p.stem for p in RECIPES} >= set(OUR_RECIPES)


@pytest.mark.parametrize("name", OUR_RECIPES)
def test_recipe_loads_and_validates(name):
    cfg = load_config(ROOT / "recipes" / f"{name}.yaml", world_size=1)
    assert cfg.name == name
    assert cfg.validate(world_size=1) is cfg


def test_1p2b_recipe_is_the_paper():
    cfg = load_config(ROOT / "recipes" / "xmodel2_1p2b.yaml", world_size=1)
    m, mup, t, s = cfg.model, cfg.mup, cfg.train, cfg.schedule
    assert (m.hidden_size, m.ffn_hidden_size, m.num_layers) == (1536, 3840, 48)
    assert (m.num_attention_heads, m.num_query_groups, m.head_dim) == (24, 8, 64)
    assert (m.vocab_size, m.seq_length, m.tie_embeddings, m.transformer_impl) == (65280, 4096, True, "auto")
    assert (mup.enabled, mup.scale_emb, mup.dim_model_base, mup.scale_depth, mup.init_std) == (
        True, 12.0, 256, 1.4, 0.1)
    assert mup.attention_scale == "sqrt"
    assert cfg.optimizer.lr == 0.01
    assert (s.warmup_steps, s.decay_style, s.half_life_steps) == (2000, "half_life", 5000)
    assert t.global_batch_size == 960 and t.global_batch_size * m.seq_length == 3_932_160
    assert t.batch_size_schedule[0] == BatchChange(step=0, global_batch_size=480)
    assert t.batch_size_schedule[-1].global_batch_size == 960
    assert (t.global_batch_size_at(0), t.global_batch_size_at(1999), t.global_batch_size_at(2000)) == (
        480, 480, 960)
    assert t.precision == "bf16"
    assert (cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel) == (1, 1)
    assert tied_params(m) == 1_251_755_520  # the paper: 1,251.8M with tying


def test_dataclass_defaults_are_the_paper():
    recipe = load_config(ROOT / "recipes" / "xmodel2_1p2b.yaml")
    assert ModelConfig() == recipe.model
    assert MupConfig() == recipe.mup
    assert ExperimentConfig(name="x").optimizer == recipe.optimizer
    assert ExperimentConfig(name="x").validate(world_size=8).name == "x"


@pytest.mark.parametrize("name, target", [("nano_6m", 6e6), ("tiny_54m", 54e6)])
def test_wind_tunnel_sizes(name, target):
    cfg = load_config(ROOT / "recipes" / f"{name}.yaml")
    big = load_config(ROOT / "recipes" / "xmodel2_1p2b.yaml")
    assert abs(tied_params(cfg.model) - target) / target < 0.05
    assert cfg.mup == big.mup and cfg.optimizer == big.optimizer
    assert cfg.schedule.half_life_steps == big.schedule.half_life_steps
    # the same data mixture, with the decay stage moved to the last 10% of the shorter run
    assert cfg.data.stages.keys() == big.data.stages.keys()
    assert cfg.data.stages["decay"].blend == big.data.stages["decay"].blend
    assert cfg.data.stages["decay"].start_step == cfg.schedule.decay_start == cfg.train.steps * 9 // 10
    assert cfg.model.vocab_size == 65280 and cfg.model.tie_embeddings
    assert cfg.model.head_dim % 8 == 0
    assert cfg.model.num_attention_heads % cfg.model.num_query_groups == 0


def test_cpu_quickstart_values():
    cfg = load_config(QUICK, world_size=1)
    assert cfg.model.hidden_size == load_config(NANO).model.hidden_size
    assert (cfg.train.precision, cfg.model.transformer_impl, cfg.model.seq_length) == ("fp32", "local", 128)
    assert (cfg.train.micro_batch_size, cfg.train.global_batch_size, cfg.train.steps) == (4, 8, 30)
    assert cfg.train.batch_size_schedule == []
    assert (cfg.schedule.warmup_steps, cfg.schedule.decay_start, cfg.schedule.half_life_steps) == (5, 20, 5)
    assert (cfg.data.kind, cfg.logging.wandb_mode, cfg.optimizer.lr) == ("synthetic", "disabled", 0.01)
    assert cfg.optimizer.use_distributed_optimizer and cfg.train.log_interval == 1
    load_config(QUICK, world_size=2)  # DP 2: 8 = 4 x 2


def test_samples_between_follows_the_batch_schedule():
    train = load_config(ROOT / "recipes" / "xmodel2_1p2b.yaml").train
    assert train.samples_between(0, 2000) == 2000 * 480
    assert train.samples_between(1990, 2010) == 10 * 480 + 10 * 960
    assert train.samples_between(5, 5) == 0
    brute = sum(train.global_batch_size_at(s) for s in range(1500, 4321))
    assert train.samples_between(1500, 4321) == brute


# --- packaged recipe names ------------------------------------------------------------------

def test_packaged_recipes_by_name(tmp_path, monkeypatch):
    assert (ROOT / "recipes").resolve() == RECIPES_DIR  # the root folder is a symlink to them
    assert set(packaged_recipes()) >= set(OUR_RECIPES)
    assert resolve_recipe("nano_6m") == resolve_recipe("nano_6m.yaml") == RECIPES_DIR / "nano_6m.yaml"
    monkeypatch.chdir(tmp_path)  # no recipes/ here: names still find the packaged ones
    cfg = load_config("cpu_quickstart", ["train.steps=3"])
    assert cfg == load_config(QUICK, ["train.steps=3"]) and cfg.name == "cpu_quickstart"
    write(tmp_path, "cpu_quickstart.yaml", "extends: nano_6m.yaml\ntrain:\n  steps: 9\n")
    assert resolve_recipe("cpu_quickstart.yaml") == Path("cpu_quickstart.yaml")  # a file wins
    assert load_config("cpu_quickstart.yaml").train.steps == 9
    with pytest.raises(ConfigFileNotFoundError) as info:
        load_config("no_such_recipe")
    assert str(info.value) == ("config file no_such_recipe does not exist (packaged recipes: "
                               + ", ".join(packaged_recipes()) + ")")
    with pytest.raises(ConfigFileNotFoundError, match="packaged recipes: cpu_quickstart"):
        resolve_recipe("sub/nano_6m.yaml")  # a path is never a packaged name


# --- CLI ------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "xm2_megatron.tools.config", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_cli_prints_every_recipe(recipe):
    out = cli(recipe.relative_to(ROOT), "--world-size", 1)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == config_to_dict(load_config(recipe))


@pytest.mark.parametrize("args, message", [
    (["recipes/cpu_quickstart.yaml", "model.hiden_size=3"],
     "error: unknown key 'model.hiden_size' from the command line; did you mean 'model.hidden_size'?"),
    (["recipes/cpu_quickstart.yaml", "model.num_query_groups=3"],
     "error: model.num_attention_heads=10 is not divisible by model.num_query_groups=3"),
    (["recipes/cpu_quickstart.yaml", "--world-size", "3"], "error: train.global_batch_size=8"),
    (["recipes/missing.yaml"], "error: config file recipes/missing.yaml does not exist"),
])
def test_cli_errors(args, message):
    out = cli(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith(message) and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_cli_overrides_and_world_size():
    out = cli("recipes/cpu_quickstart.yaml", "train.steps=3", "--world-size", "2", "model.num_layers=6")
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(out.stdout)
    assert data["train"]["steps"] == 3 and data["model"]["num_layers"] == 6


@pytest.mark.parametrize("error", [ConfigError, DataError, ConversionError])
def test_run_cli_exits_2_with_one_line(capsys, error):
    def bad():
        raise error("x.y=1 is wrong\nsecond line")

    with pytest.raises(SystemExit) as info:
        run_cli(bad)
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: x.y=1 is wrong second line\n"
    assert run_cli(lambda a, b=0: a + b, 1, b=2) == 3


def test_error_classes_share_the_user_error_root():
    assert issubclass(ConfigError, UserError) and issubclass(ConfigFileNotFoundError, ConfigError)
    assert issubclass(ConfigFileNotFoundError, FileNotFoundError)
    for cls in (DataError, ConversionError):  # input errors, not configuration errors
        assert issubclass(cls, UserError) and not issubclass(cls, ConfigError)


def test_cli_packaged_recipe_names(tmp_path):
    out = subprocess.run([sys.executable, "-m", "xm2_megatron.tools.config", "--list"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == packaged_recipes()
    out = subprocess.run([sys.executable, "-m", "xm2_megatron.tools.config", "nano_6m", "train.steps=3"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == config_to_dict(load_config(NANO, ["train.steps=3"]))
