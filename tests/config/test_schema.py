"""xm2_megatron.config schema: field types and the validation messages of each section."""

from __future__ import annotations

import pytest

from xm2_megatron.config import ConfigError, ExperimentConfig, load_config

from .conftest import QUICK, error_of, write

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
    (["parallel.overlap_param_gather=true"], None,
     "parallel.overlap_param_gather=True requires parallel.overlap_grad_reduce=True"),
    (["parallel.overlap_grad_reduce=true", "parallel.overlap_param_gather=true",
      "optimizer.use_distributed_optimizer=false"], None,
     "parallel.overlap_param_gather=True requires optimizer.use_distributed_optimizer=True"),
    (["parallel.ddp_bucket_size=0"], None, "parallel.ddp_bucket_size=0 must be positive (> 0)"),
    (["parallel.virtual_pipeline=2"], None,
     "parallel.virtual_pipeline=2 requires parallel.pipeline_parallel > 1 (got 1)"),
    (["parallel.virtual_pipeline=1", "parallel.pipeline_parallel=2"], None,
     "parallel.virtual_pipeline=1 must be null (one model chunk per pipeline rank) or at least 2"),
    (["parallel.virtual_pipeline=4", "parallel.pipeline_parallel=2"], None,
     "model.num_layers=12 is not divisible by parallel.pipeline_parallel x "
     "parallel.virtual_pipeline=8: each virtual stage must hold the same number of layers"),
    (["parallel.virtual_pipeline=2", "parallel.pipeline_parallel=2", "train.eval_iters=3"], None,
     "train.eval_iters=3 is not divisible by parallel.pipeline_parallel=2"),
    (["parallel.virtual_pipeline=2", "parallel.pipeline_parallel=2", "train.global_batch_size=12"],
     2, "train.global_batch_size=12 gives 3 micro-batches per data-parallel rank "
        "(train.micro_batch_size=4, data-parallel size 1), not a multiple of "
        "parallel.pipeline_parallel=2"),
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


# --- validation needs a validation split ---------------------------------------------------

INDEXED = "data={kind: indexed, tokenizer_model: t.model, split: '%s', stages: {stable: {blend: [{prefix: a}]}}}"


def test_eval_interval_needs_a_validation_share_of_indexed_data():
    msg = error_of(QUICK, [INDEXED % "100,0,0"])  # the quickstart sets train.eval_interval=10
    assert msg == ("data.split='100,0,0' gives validation no share of the data but "
                   "train.eval_interval=10 asks for a validation loss: give the valid part a share "
                   "(e.g. data.split='99,1,0') or set train.eval_interval=null")
    load_config(QUICK, [INDEXED % "100,0,0", "train.eval_interval=null"])  # no validation: fine
    load_config(QUICK, [INDEXED % "99.9,0.1,0"])
    load_config(QUICK, ["data.split=100,0,0"])  # synthetic data has no split to validate on
