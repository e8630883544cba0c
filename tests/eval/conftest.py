"""A small model for the evaluation tests: the conversion tests' model at sequence length 256
(no benchmark prompt is truncated), trained 4 steps in one process, its export, and its scores
on a few tasks with every item logged."""

from pathlib import Path

import pytest

from tests import launch

REPO = Path(__file__).parents[2]
RECIPE = REPO / "tests" / "convert" / "tiny.yaml"
TASKS = ["xm2_arc_easy", "xm2_winogrande", "xm2_mmlu"]
LIMIT = 6  # items per task (per subject for MMLU)


@pytest.fixture(scope="session")
def eval_checkpoint(tmp_path_factory, tokenizer_model) -> Path:
    root = tmp_path_factory.mktemp("eval_model")
    launch.run_trainer(RECIPE, "model.seq_length=256", f"checkpoint.dir={root / 'ckpt'}",
                       f"logging.output_dir={root / 'runs'}",
                       f"data.tokenizer_model={tokenizer_model}", check=True)
    return root / "ckpt"


@pytest.fixture(scope="session")
def eval_export(tmp_path_factory, eval_checkpoint) -> Path:
    from xm2_megatron.convert.export import export_checkpoint

    out = tmp_path_factory.mktemp("eval_export") / "hf"
    export_checkpoint(eval_checkpoint, out)
    return out


@pytest.fixture(scope="session")
def harness(eval_export, tmp_path_factory) -> dict:
    from xm2_megatron.eval.harness import HarnessSettings, run_harness

    return run_harness(eval_export, HarnessSettings(tasks=TASKS, limit=LIMIT, log_samples=True),
                       tmp_path_factory.mktemp("harness"))
