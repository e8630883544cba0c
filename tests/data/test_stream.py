"""The per-step data stream: stage switches, the batch-size schedule, DP splits and resume."""

import json
import signal
import subprocess

import psutil
import pytest
import torch

from xm2_megatron.data.mixture import stage_blend
from xm2_megatron.data.stream import StageDataStream
from tests.data.conftest import mixture_config
from tests.launch import run_trainer, start_trainer, wait_for

pytestmark = pytest.mark.usefixtures("megatron_runtime")


def _global_batch(cfg, step, dp_size=2):
    """The whole global batch of ``step``, gathered over simulated DP ranks in rank order."""
    stages, batches = set(), []
    for rank in range(dp_size):
        stage, microbatches = StageDataStream(cfg, rank, dp_size).microbatches(step)
        stages.add(stage)
        batches += microbatches
    (stage,) = stages
    return stage, {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def test_positions_follow_stages_and_batch_schedule(corpus):
    stream = StageDataStream(mixture_config(corpus), 0, 1)
    assert [stream.stage_at(s) for s in (0, 29, 30, 39)] == ["stable", "stable", "decay", "decay"]
    assert stream.consumed_before(30) == {"stable": 20 * 8 + 10 * 16, "decay": 0}
    assert stream.consumed_before(35) == {"stable": 320, "decay": 5 * 16}
    with pytest.raises(IndexError):
        stream.stage_at(40)


def test_stage_switch_changes_what_is_sampled(corpus):
    """Count samples per source before and after the switch at step 30."""
    cfg = mixture_config(corpus)
    before = torch.cat([_global_batch(cfg, s)[1]["dataset_id"] for s in range(20, 30)])
    after = torch.cat([_global_batch(cfg, s)[1]["dataset_id"] for s in range(30, 40)])
    assert len(before) == len(after) == 160  # 10 steps of 16 after the batch-size change
    # stable: web 3 : code 1 (blend ids 0, 1); no SFT dataset exists in that stage
    assert abs(int((before == 0).sum()) - 120) <= 2 and int((before == 1).sum()) >= 38
    # decay: ids 2 and 3 are the SFT datasets, 64% of the samples
    categories = stage_blend(cfg.data.stages["decay"]).categories
    sft = sum(categories[i] is not None for i in after.tolist())
    assert abs(sft - 0.64 * 160) <= 2


def test_resumed_stream_reads_what_the_uninterrupted_one_reads(corpus):
    cfg = mixture_config(corpus)
    running = StageDataStream(cfg, 0, 1)
    seen = [running.microbatches(s)[1] for s in range(28, 33)]
    resumed = StageDataStream(cfg, 0, 1)  # a new process starting at step 31
    for step in (31, 32):
        for a, b in zip(seen[step - 28], resumed.microbatches(step)[1]):
            assert torch.equal(a["tokens"], b["tokens"])


def test_data_parallel_ranks_split_the_same_global_batch(corpus):
    cfg = mixture_config(corpus)
    for step in (5, 25, 35):
        _, one = _global_batch(cfg, step, dp_size=1)
        _, two = _global_batch(cfg, step, dp_size=2)
        assert torch.equal(one["tokens"], two["tokens"])
        assert one["tokens"].shape[0] == cfg.train.global_batch_size_at(step)


STAGE_SWITCH_RUN = ["train.steps=12", "data.stages.decay.start_step=8", "schedule.decay_start=8",
                    "train.batch_size_schedule=[{step: 4, global_batch_size: 16}]",
                    "train.eval_interval=4", "train.eval_iters=2"]


def _train(recipe, out, *extra, **popen):
    overrides = [*STAGE_SWITCH_RUN, f"logging.output_dir={out}", *extra]
    if popen:
        return start_trainer(recipe, *overrides, env={}, **popen)
    return run_trainer(recipe, *overrides, env={}, check=True)


def _records(out):
    everything = [json.loads(line) for line in open(out / "recipe" / "metrics.jsonl")]
    return [r for r in everything if "loss" in r], [r for r in everything if "val_loss" in r]


@pytest.fixture(scope="module")
def stage_switch_run(corpus, tmp_path_factory):
    """12 uninterrupted steps: batch 8 -> 16 at step 4, stable -> decay at step 8."""
    mixture_config(corpus)  # writes corpus/recipe.yaml
    out = tmp_path_factory.mktemp("uninterrupted")
    _train(corpus / "recipe.yaml", out)
    return _records(out)


def test_entry_point_trains_across_the_stage_switch(stage_switch_run):
    records, validation = stage_switch_run
    assert [r["step"] for r in validation] == [4, 8, 12]  # held-out split of each stage's blend
    assert validation[1]["val_loss"] < validation[0]["val_loss"]
    assert [r["stage"] for r in records] == ["stable"] * 8 + ["decay"] * 4
    assert [r["global_batch"] for r in records] == [8] * 4 + [16] * 8
    assert records[7]["loss"] < records[0]["loss"] - 1.0


def test_sigkill_then_resume_across_the_stage_switch(corpus, stage_switch_run, tmp_path):
    """Killed after an (async) checkpoint before the batch change or the decay, run again: the
    same losses at every step, on indexed data whose blend changes at step 8."""
    save = [f"checkpoint.dir={tmp_path / 'ckpt'}", "checkpoint.interval=3",
            "checkpoint.async_save=true"]
    process = _train(corpus / "recipe.yaml", tmp_path, *save, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
    wait_for(lambda: (tmp_path / "ckpt" / "latest").exists(), process)
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait()
    alive = psutil.wait_procs(children, timeout=20)[1]
    assert alive == [], f"left behind by the killed trainer: {alive}"
    resumed = _train(corpus / "recipe.yaml", tmp_path, *save)
    step = int(resumed.stdout.split("resumed at step ")[1].split()[0])
    assert step in (3, 6)  # before the stage switch (and at 3, before the batch change)
    records, validation = _records(tmp_path)
    want_records, want_validation = stage_switch_run
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["stage"] for r in records] == [r["stage"] for r in want_records]
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in want_records],
                                                         rel=1e-6)
    assert [r["val_loss"] for r in validation if r["step"] > step] == pytest.approx(
        [r["val_loss"] for r in want_validation if r["step"] > step], rel=1e-6)
