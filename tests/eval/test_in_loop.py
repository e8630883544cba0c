"""In-loop benchmarks (``benchmarks:`` in a recipe): the training losses are those of the same
run without them, and the scores logged at the last step are xm2-eval's scores of the
checkpoint saved there."""

import pytest

from tests import launch
from tests.eval.conftest import RECIPE
from xm2_megatron.config import ConfigError, load_config
from xm2_megatron.convert.export import export_checkpoint
from xm2_megatron.eval.harness import HarnessSettings, run_harness
from xm2_megatron.training.monitor import read_metrics

BENCH = ["benchmarks.tasks=[xm2_arc_easy,xm2_winogrande]", "benchmarks.interval=2",
         "benchmarks.limit=8"]


def _train(root, tokenizer_model, *extra):
    launch.run_trainer(RECIPE, "model.seq_length=256", f"logging.output_dir={root}",
                       f"data.tokenizer_model={tokenizer_model}", *extra, check=True)
    return read_metrics(root / "tiny" / "metrics.jsonl")


def test_benchmarks_leave_the_losses_alone_and_match_xm2_eval(tokenizer_model, tmp_path):
    plain = _train(tmp_path / "plain", tokenizer_model)
    benched = _train(tmp_path / "bench", tokenizer_model, *BENCH,
                     f"checkpoint.dir={tmp_path / 'ckpt'}")
    losses = [r["loss"] for r in plain if "loss" in r]
    assert len(losses) == 4 and [r["loss"] for r in benched if "loss" in r] == losses
    scores = {r["step"]: r for r in benched if "bench/xm2_arc_easy" in r}
    assert sorted(scores) == [2, 4]
    export_checkpoint(tmp_path / "ckpt", tmp_path / "hf")
    results = run_harness(tmp_path / "hf", HarnessSettings(
        tasks=["xm2_arc_easy", "xm2_winogrande"], limit=8), tmp_path / "eval")["results"]
    assert scores[4]["bench/xm2_arc_easy"] == results["xm2_arc_easy"]["acc,none"]
    assert scores[4]["bench/xm2_winogrande"] == results["xm2_winogrande"]["acc,none"]


def test_benchmark_settings_are_checked():
    with pytest.raises(ConfigError, match="needs benchmarks.interval"):
        load_config(RECIPE, ["benchmarks.tasks=[xm2_arc_easy]"])
    with pytest.raises(ConfigError, match="tensor_parallel=1 and pipeline_parallel=1"):
        load_config(RECIPE, [*BENCH, "parallel.pipeline_parallel=2"])
    with pytest.raises(ConfigError, match="benchmarks.limit=0 must be positive"):
        load_config(RECIPE, [*BENCH, "benchmarks.limit=0"])
