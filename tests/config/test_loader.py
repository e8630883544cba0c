"""xm2_megatron.config loading: YAML files, `extends`, overrides, dump and round trip."""

from __future__ import annotations

import pytest
import yaml

from xm2_megatron.config import (
    RECIPES_DIR,
    BatchChange,
    ExperimentConfig,
    config_to_dict,
    dump_yaml,
    load_config,
    parse_value,
)

from .conftest import NANO, OUR_RECIPES, QUICK, ROOT, error_of, write

# --- extends --------------------------------------------------------------------------------

def test_extends_chain_deep_merges(tmp_path):
    write(tmp_path, "a.yaml", "name: base\nmodel:\n  hidden_size: 192\n  num_layers: 4\n"
                              "data:\n  stages:\n    s:\n      blend: [{prefix: x}, {prefix: y}]\n"
                              "train:\n  steps: 5\n")
    write(tmp_path, "sub/b.yaml", "extends: ../a.yaml\nmodel:\n  num_layers: 2\n"
          "data:\n  stages:\n    s:\n      blend: [{prefix: z}]\n")
    c = write(tmp_path, "c.yaml", "extends: sub/b.yaml\ntrain:\n  steps: 7\n")
    cfg = load_config(c)
    assert (cfg.model.hidden_size, cfg.model.num_layers) == (192, 2)  # mappings merge
    assert cfg.model.ffn_hidden_size == 3840  # untouched default
    assert [e.prefix for e in cfg.data.stages["s"].blend] == ["z"]  # lists replace
    assert cfg.train.steps == 7  # scalars replace
    assert cfg.name == "c"  # a name is not inherited; the stem is the default


def test_extends_resolves_next_to_the_recipe_then_packaged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a packaged recipe's extends chain (cpu_quickstart -> nano_6m -> xmodel2_1p2b) is
    # relative to the recipe file, from any working directory
    assert load_config("cpu_quickstart").model.hidden_size == load_config(NANO).model.hidden_size
    # a user's recipe extends a file next to it, else a packaged recipe of that name
    write(tmp_path, "mine/nano_6m.yaml", "extends: tiny_54m\ntrain:\n  steps: 11\n")
    mine = write(tmp_path, "mine/run.yaml", "extends: nano_6m.yaml\n")
    cfg = load_config(mine)
    assert cfg.train.steps == 11 and cfg.model == load_config(RECIPES_DIR / "tiny_54m.yaml").model
    own = write(tmp_path, "own.yaml", "extends: cpu_quickstart.yaml\ntrain:\n  steps: 4\n")
    cfg = load_config(own, world_size=1)
    assert cfg.train.steps == 4 and cfg.name == "own" and cfg.data.kind == "synthetic"


def test_extends_cycle(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    msg = error_of(tmp_path / "a.yaml")
    assert msg.startswith("extends cycle:") and "a.yaml" in msg and "b.yaml" in msg
    write(tmp_path, "self.yaml", "extends: self.yaml\n")
    assert "extends cycle" in error_of(tmp_path / "self.yaml")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    child = write(tmp_path, "child.yaml", "extends: gone.yaml\n")
    msg = error_of(child)
    assert "child.yaml extends 'gone.yaml'" in msg and "gone.yaml does not exist" in msg


@pytest.mark.parametrize("text, message", [
    ("model:\n  hidden_size: [1, 2\n", ":3: invalid YAML"),
    ("model:\n  hidden_size: 1\n  hidden_size: 2\n", ":3: invalid YAML: duplicate key 'hidden_size'"),
    ("- 1\n- 2\n", "must contain a YAML mapping at the top level"),
    ("extends: [a.yaml]\n", "extends=['a.yaml']"),
])
def test_bad_yaml_files(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    msg = error_of(path)
    assert str(path) in msg and message in msg


def test_empty_file_gives_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "empty.yaml", ""))
    assert cfg == ExperimentConfig(name="empty")


# --- overrides ------------------------------------------------------------------------------

def test_overrides_parse_as_yaml():
    cfg = load_config(QUICK, ["train.steps=20", "model.tie_embeddings=false",
                              "data.stages.stable.blend=[{prefix: a=b}, {prefix: c}]",
                              "train.batch_size_schedule=[{step: 0, global_batch_size: 8}]",
                              "model={num_layers: 6}"])
    assert cfg.train.steps == 20 and cfg.model.tie_embeddings is False
    assert [e.prefix for e in cfg.data.stages["stable"].blend] == ["a=b", "c"]  # only the first '=' splits
    assert cfg.train.batch_size_schedule == [BatchChange(step=0, global_batch_size=8)]
    assert cfg.model.num_layers == 6 and cfg.model.hidden_size == 80  # a mapping merges
    assert parse_value("1e-5") == 1e-5 and parse_value("off") is False and parse_value("") is None


@pytest.mark.parametrize("override, message", [
    ("train.steps", "override 'train.steps' (from the command line) must look like dotted.key=value"),
    ("=3", "override '=3'"),
    ("train..steps=3", "override 'train..steps=3'"),
    ("train.steps.x=3", "train.steps is not a mapping"),
    ("data.split=[a", "override 'data.split=[a' (from the command line) has an invalid YAML value"),
])
def test_bad_overrides(override, message):
    assert message in error_of(QUICK, [override])


def test_later_override_wins():
    assert load_config(QUICK, ["train.steps=3", "train.steps=4"]).train.steps == 4


# --- round trip -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", OUR_RECIPES)
def test_dump_load_round_trip(tmp_path, name):
    cfg = load_config(ROOT / "recipes" / f"{name}.yaml", ["logging.run_name=r", "data.stages.extra={start_step: 400000, blend: [{prefix: p}]}"])
    text = dump_yaml(cfg)
    assert yaml.safe_load(text) == config_to_dict(cfg)
    again = load_config(write(tmp_path, "dumped.yaml", text))
    assert again == cfg


def test_config_to_dict_is_plain():
    d = config_to_dict(load_config(ROOT / "recipes" / "xmodel2_1p2b.yaml"))
    assert list(d) == ["name", "model", "mup", "optimizer", "schedule", "train", "data", "parallel",
                       "checkpoint", "logging", "benchmarks"]
    assert d["train"]["batch_size_schedule"][0] == {"step": 0, "global_batch_size": 480}
