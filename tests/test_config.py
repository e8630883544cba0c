"""Tests of xm2_megatron.config: schema validation, YAML loading, overrides, recipes, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xm2_megatron.config import (
    BatchChange,
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    MupConfig,
    config_to_dict,
    dump_yaml,
    load_config,
    parse_value,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[1]
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
    assert tied_params(m) == 1_251_755_520  # shared/xmodel2-spec.md: 1,251.8M with tying


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


# --- unknown keys -------------------------------------------------------------------------

def test_unknown_key_in_file_suggests(tmp_path):
    path = write(tmp_path, "x.yaml", "model:\n  hiden_size: 64\n")
    msg = error_of(path)
    assert msg == f"unknown key 'model.hiden_size' in {path}; did you mean 'model.hidden_size'?"


def test_unknown_section_suggests(tmp_path):
    msg = error_of(write(tmp_path, "x.yaml", "optimiser:\n  lr: 0.1\n"))
    assert "unknown key 'optimiser'" in msg and "did you mean 'optimizer'?" in msg


def test_unknown_key_from_command_line(tmp_path):
    msg = error_of(QUICK, ["train.stepz=3"])
    assert "unknown key 'train.stepz' from the command line; did you mean 'train.steps'?" == msg
    msg = error_of(QUICK, ["modle.hidden_size=3"])
    assert "unknown key 'modle' from the command line" in msg and "'model'" in msg


def test_unknown_key_in_wrong_section_suggests_right_one():
    assert "did you mean 'optimizer.lr'?" in error_of(QUICK, ["train.lr=0.1"])


def test_unknown_key_without_close_match_lists_known(tmp_path):
    msg = error_of(write(tmp_path, "x.yaml", "parallel:\n  zzzzzz: 1\n"))
    assert "unknown key 'parallel.zzzzzz'" in msg and "tensor_parallel" in msg


def test_unknown_key_in_parent_names_parent(tmp_path):
    write(tmp_path, "base.yaml", "train:\n  stepps: 3\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\n")
    assert f"unknown key 'train.stepps' in {tmp_path / 'base.yaml'}" in error_of(child)


# --- types --------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("train.steps=ten", "train.steps='ten' (from the command line) must be an int"),
    ("train.steps=true", "train.steps=True (from the command line) must be an int"),
    ("train.steps=2.0", "train.steps=2.0 (from the command line) must be an int"),
    ("train.steps=null", "train.steps=None (from the command line) must be an int"),
    ("optimizer.lr=fast", "optimizer.lr='fast' (from the command line) must be a float"),
    ("optimizer.lr=true", "optimizer.lr=True (from the command line) must be a float"),
    ("model.tie_embeddings=1", "model.tie_embeddings=1 (from the command line) must be a bool"),
    ("model.transformer_impl=3", "model.transformer_impl=3 (from the command line) must be a string"),
    ("checkpoint.interval=often", "checkpoint.interval='often' (from the command line) must be an int or null"),
    ("checkpoint.dir=5", "checkpoint.dir=5 (from the command line) must be a string or null"),
    ("model=5", "model=5 (from the command line) must be a mapping"),
    ("data.stages.stable.blend=a", "data.stages.stable.blend='a' (from the command line) must be a list"),
    ("data.stages.stable.blend=[{prefix: 1}]",
     "data.stages.stable.blend[0].prefix=1 (from the command line) must be a string"),
    ("data.stages=[a]", "data.stages=['a'] (from the command line) must be a mapping"),
    ("train.batch_size_schedule={step: 0}", "train.batch_size_schedule={'step': 0} (from the command line) "
                                            "must be a list"),
    ("train.batch_size_schedule=[{step: 0}]",
     "train.batch_size_schedule[0].global_batch_size is missing (from the command line)"),
    ("train.batch_size_schedule=[{step: x, global_batch_size: 8}]",
     "train.batch_size_schedule[0].step='x' (from the command line) must be an int"),
    ("train.batch_size_schedule=[{step: 0, global_batch_size: 8, when: 1}]",
     "unknown key 'train.batch_size_schedule[0].when' from the command line"),
])
def test_wrong_types(override, message):
    assert message in error_of(QUICK, [override])


def test_type_error_in_file_names_file(tmp_path):
    path = write(tmp_path, "x.yaml", "train:\n  steps: ten\n")
    assert error_of(path) == f"train.steps='ten' (in {path}) must be an int"


def test_accepted_coercions():
    cfg = load_config(QUICK, ["optimizer.lr=1", "checkpoint.dir=null", "checkpoint.interval=5",
                              "model.norm_eps=1e-6", "logging.run_name=run-1"])
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.checkpoint.dir is None and cfg.checkpoint.interval == 5
    assert cfg.model.norm_eps == 1e-6 and cfg.logging.run_name == "run-1"


# --- enums, positivity ---------------------------------------------------------------------

@pytest.mark.parametrize("key, value, allowed", [
    ("schedule.decay_style", "exponential", "half_life, linear, cosine, constant"),
    ("model.transformer_impl", "te", "auto, local, transformer_engine"),
    ("train.precision", "fp16", "fp32, bf16, fp8"),
    ("logging.wandb_mode", "dryrun", "online, offline, disabled"),
    ("mup.attention_scale", "cubic", "sqrt, linear"),
    ("data.kind", "jsonl", "synthetic, indexed"),
])
def test_enums(key, value, allowed):
    assert error_of(QUICK, [f"{key}={value}"]) == f"{key}='{value}' is not allowed: must be one of {allowed}"


@pytest.mark.parametrize("key, value", [
    ("model.hidden_size", 0), ("model.ffn_hidden_size", -8), ("model.num_layers", 0),
    ("model.num_attention_heads", 0), ("model.num_query_groups", 0), ("model.vocab_size", 0),
    ("model.seq_length", 0), ("model.norm_eps", 0.0), ("mup.dim_model_base", 0), ("mup.init_std", -0.1),
    ("optimizer.lr", 0.0), ("schedule.half_life_steps", 0), ("schedule.decay_steps", 0),
    ("train.steps", 0), ("train.micro_batch_size", 0), ("train.global_batch_size", -1),
    ("train.log_interval", 0), ("parallel.tensor_parallel", 0), ("parallel.pipeline_parallel", -1),
    ("checkpoint.interval", 0), ("checkpoint.keep_last", 0),
])
def test_non_positive_sizes(key, value):
    msg = error_of(QUICK, [f"{key}={value}"])
    assert msg == f"{key}={value!r} must be positive (> 0)"


@pytest.mark.parametrize("override, message", [
    ("schedule.warmup_steps=-1", "schedule.warmup_steps=-1 must be >= 0"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 must be >= 0"),
    ("optimizer.adam_beta2=1.0", "optimizer.adam_beta2=1.0 must be in [0, 1)"),
    ("optimizer.min_lr=0.5", "optimizer.min_lr=0.5 must not exceed optimizer.lr=0.01"),
    ("schedule.decay_start=2", "schedule.decay_start=2 is before the end of warmup (schedule.warmup_steps=5)"),
    ("schedule.decay_style=cosine", "schedule.decay_steps=None must be set for schedule.decay_style='cosine'"),
    ("data={kind: indexed, tokenizer_model: null}",
     "data.tokenizer_model=None must name the SentencePiece model"),
    ("data.seq_length=4096", "data.seq_length=4096 is longer than model.seq_length=128"),
    ("data.split=90,10", "data.split='90,10' must be three non-negative numbers"),
    ("data.stages.stable.start_step=5", "data.stages.stable.start_step=5 must be 0"),
    ("data.stages.decay.start_step=0",
     "data.stages.decay.start_step=0 must be greater than data.stages.stable.start_step=0"),
    ("data.stages.stable.blend=[]", "data.stages.stable.blend=[] must name at least one dataset"),
    ("data.stages.stable.blend=[{prefix: a, weight: 0}]",
     "data.stages.stable.blend[0].weight=0.0 must be positive"),
    ("data.stages.stable.blend=[{prefix: a, category: poetry}]",
     "data.stages.stable.blend[0].category='poetry' is not allowed: must be one of mathematics, code"),
    ("data.stages.decay.sft_share=1.5", "data.stages.decay.sft_share=1.5 must be in (0, 1]"),
    ("data.stages.stable.blend=[{prefix: a}, {prefix: m, category: mathematics}]",
     "data.stages.stable.blend has SFT entries (with a category) but data.stages.stable.sft_share"),
    ("data.stages.stable.sft_share=0.5",
     "data.stages.stable.sft_share=0.5 needs blend entries with a category"),
    ("train.batch_size_schedule=[{step: -1, global_batch_size: 8}]",
     "train.batch_size_schedule[0].step=-1 must be >= 0"),
    ("train.batch_size_schedule=[{step: 0, global_batch_size: 0}]",
     "train.batch_size_schedule[0].global_batch_size=0 must be positive"),
    ("name=", "name=None (from the command line) must be a string"),
    ("name=''", "name='' must not be empty"),
])
def test_other_value_checks(override, message):
    assert message in error_of(QUICK, [override])


# --- divisibility and parallel layout -------------------------------------------------------

@pytest.mark.parametrize("overrides, world_size, message", [
    (["model.num_query_groups=3"], None,
     "model.num_attention_heads=10 is not divisible by model.num_query_groups=3: "
     "the number of attention heads must be a multiple of the KV heads"),
    (["model.num_attention_heads=3", "model.num_query_groups=1"], None,
     "model.hidden_size=80 is not divisible by model.num_attention_heads=3"),
    (["parallel.tensor_parallel=5"], None,
     "model.num_query_groups=2 is not divisible by parallel.tensor_parallel=5"),
    (["parallel.tensor_parallel=4"], None,
     "model.num_attention_heads=10 is not divisible by parallel.tensor_parallel=4"),
    (["model.ffn_hidden_size=201", "parallel.tensor_parallel=2"], None,
     "model.ffn_hidden_size=201 is not divisible by parallel.tensor_parallel=2"),
    (["parallel.pipeline_parallel=5"], None,
     "model.num_layers=12 is not divisible by parallel.pipeline_parallel=5: "
     "each pipeline stage must hold the same number of layers"),
    (["parallel.tensor_parallel=2"], 3,
     "world_size=3 is not divisible by parallel.tensor_parallel x parallel.pipeline_parallel=2"),
    (["parallel.tensor_parallel=2", "parallel.pipeline_parallel=2"], 6,
     "world_size=6 is not divisible by parallel.tensor_parallel x parallel.pipeline_parallel=4"),
    ([], 4, "train.global_batch_size=8 is not divisible by train.micro_batch_size x data-parallel size "
            "= 4 x 4 = 16"),
    (["train.global_batch_size=6"], None,
     "train.global_batch_size=6 is not divisible by train.micro_batch_size x data-parallel size = 4 x 1 = 4"),
    (["train.batch_size_schedule=[{step: 0, global_batch_size: 8}, {step: 5, global_batch_size: 12}]"], 2,
     "train.batch_size_schedule[1].global_batch_size=12 is not divisible by train.micro_batch_size x "
     "data-parallel size = 4 x 2 = 8"),
    (["train.batch_size_schedule=[{step: 5, global_batch_size: 8}, {step: 5, global_batch_size: 16}]"], None,
     "train.batch_size_schedule[1].step=5 must be greater than the previous entry's step=5: "
     "schedule steps must be strictly increasing"),
    (["parallel.sequence_parallel=true"], None,
     "parallel.sequence_parallel=True requires parallel.tensor_parallel > 1"),
    (["parallel.sequence_parallel=true", "parallel.tensor_parallel=2", "model.seq_length=129"], 2,
     "model.seq_length=129 is not divisible by parallel.tensor_parallel=2"),
    (["train.precision=fp8"], None, "train.precision='fp8' requires Transformer Engine"),
    ([], 0, "world_size=0 must be a positive int"),
])
def test_layout_checks(overrides, world_size, message):
    assert message in error_of(QUICK, overrides, world_size)


def test_world_size_checks_only_when_given():
    cfg = load_config(QUICK, ["parallel.tensor_parallel=2"])  # no world size: nothing to check
    assert cfg.parallel.data_parallel(8) == 4
    cfg = load_config(QUICK, ["parallel.tensor_parallel=2", "parallel.sequence_parallel=true"], world_size=4)
    assert cfg.parallel.sequence_parallel
    load_config(QUICK, ["parallel.pipeline_parallel=2"], world_size=4)  # DP 2: 8 = 4 x 2


def test_validate_on_dataclasses_directly():
    cfg = ExperimentConfig(name="x")
    cfg.model.num_query_groups = 7
    with pytest.raises(ConfigError, match=r"model\.num_query_groups=7"):
        cfg.validate()
    assert issubclass(ConfigError, ValueError)


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
                       "checkpoint", "logging"]
    assert d["train"]["batch_size_schedule"][0] == {"step": 0, "global_batch_size": 480}


# --- CLI ------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "xm2_megatron.config", *map(str, args)],
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


def test_run_cli_exits_2_with_one_line(capsys):
    def bad():
        raise ConfigError("x.y=1 is wrong\nsecond line")

    with pytest.raises(SystemExit) as info:
        run_cli(bad)
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: x.y=1 is wrong second line\n"
    assert run_cli(lambda a, b=0: a + b, 1, b=2) == 3


@pytest.mark.parametrize("data, message", [
    ("data:\n  kind: indexed\n  tokenizer_model: t.model\n",
     "data.stages={} must name at least one stage when data.kind='indexed'"),
    ("data:\n  stages:\n    decay:\n      blend: [{prefix: a}, {prefix: c, category: code}]\n",
     "data.stages.decay.blend has SFT entries (with a category) but data.stages.decay.sft_share is not set"),
    ("data:\n  stages:\n    decay:\n      sft_share: 0.5\n      blend: [{prefix: c, category: code}]\n",
     "data.stages.decay.sft_share=0.5 < 1 needs pretraining entries (without a category)"),
])
def test_stage_checks_in_a_file(tmp_path, data, message):
    assert message in error_of(write(tmp_path, "x.yaml", data), [])


def test_samples_between_follows_the_batch_schedule():
    train = load_config(ROOT / "recipes" / "xmodel2_1p2b.yaml").train
    assert train.samples_between(0, 2000) == 2000 * 480
    assert train.samples_between(1990, 2010) == 10 * 480 + 10 * 960
    assert train.samples_between(5, 5) == 0
    brute = sum(train.global_batch_size_at(s) for s in range(1500, 4321))
    assert train.samples_between(1500, 4321) == brute
