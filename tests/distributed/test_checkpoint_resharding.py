"""Checkpoints across processes: a DP2 run with the distributed optimizer (saving through
megatron's async queue) resumes exactly, and checkpoints saved at one TP/PP/DP layout
continue at another (TP2 with sequence parallelism, and PP2 with virtual stages in both
directions, among them) with the uninterrupted run's losses.

The uninterrupted reference is the DP2 run (itself equal to one process within ~3e-8
relative, see ``test_parity.py``); resharded runs may differ from it by float reordering
only: relative tolerance 1e-6.
"""

import json
from pathlib import Path

import pytest

from tests.launch import REPO, run_trainer, run_worker

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("checkpoint_worker.py")
RECIPE = REPO / "tests" / "distributed" / "parity.yaml"
TOLERANCE = 1e-6
VIRTUAL2 = "parallel.virtual_pipeline=2"


def _run(out: Path, nproc: int, *args: str) -> dict:
    run_worker(WORKER, [*args, "--out", str(out)], nproc=nproc)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """DP2 + distributed optimizer: 6 steps, saved after step 3. TP2, and PP2 with two virtual
    stages per rank: 3 steps, saved."""
    out = tmp_path_factory.mktemp("ckpt_layouts")
    dp2 = _run(out / "dp2.json", 2, "--distopt", "--async-save", "--save", str(out / "dp2"),
               "--save-at", "3")
    _run(out / "tp2.json", 2, "--tp", "2", "--steps", "3", "--save", str(out / "tp2"),
         "--save-at", "3")
    _run(out / "pp2vp2.json", 2, "--pp", "2", "--set", VIRTUAL2, "--steps", "3",
         "--save", str(out / "pp2vp2"), "--save-at", "3")
    return {"out": out, "losses": dp2["losses"]}


def _assert_continues(resumed: dict, reference: dict, tolerance: float) -> None:
    assert resumed["restored"]["step"] == 3
    assert list(resumed["losses"]) == ["3", "4", "5"]
    for step, loss in resumed["losses"].items():
        want = reference[step]
        assert abs(loss - want) <= tolerance * abs(want), (step, loss, want)


def test_distributed_optimizer_resume_equals_uninterrupted(saved, tmp_path):
    resumed = _run(tmp_path / "resumed.json", 2, "--distopt", "--load", str(saved["out"] / "dp2"))
    _assert_continues(resumed, saved["losses"], tolerance=1e-7)


CASES = {
    # name: (saved run, processes, layout of the resumed run)
    "tp2_to_tp1": ("tp2", 1, []),
    # into and out of the interleaved schedule's model chunks
    "tp2_to_pp2_virtual": ("tp2", 2, ["--pp", "2", "--set", VIRTUAL2]),
    "pp2_virtual_to_tp1": ("pp2vp2", 1, []),
    # with sequence parallelism: the same checkpoint layout as plain TP
    "dp2_distopt_to_tp2_sp": ("dp2", 2, ["--tp", "2", "--distopt",
                                         "--set", "parallel.sequence_parallel=true"]),
    "dp2_distopt_to_dp1": ("dp2", 1, ["--distopt"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resharded_resume_continues(saved, tmp_path, case):
    source, nproc, layout = CASES[case]
    resumed = _run(tmp_path / f"{case}.json", nproc, *layout, "--load", str(saved["out"] / source))
    _assert_continues(resumed, saved["losses"], TOLERANCE)


def test_a_checkpoint_saved_with_overlapped_gather_resumes_in_one_process(tmp_path):
    """With ``overlap_param_gather`` the updated shards reach the other rank only in the next
    forward: the trainer gathers them before it saves, so the checkpoint of step 2 of a DP2
    run continues in one process (without overlap) with the DP2 run's losses."""
    def train(nproc, out, *extra):
        result = run_trainer(RECIPE, "train.steps=4", "schedule.warmup_steps=1",
                             "optimizer.use_distributed_optimizer=true", "train.eval_interval=null",
                             "logging.wandb_mode=disabled", f"logging.output_dir={tmp_path / out}",
                             *extra, nproc=nproc, check=True)
        return {r["step"]: r["loss"] for r in map(json.loads, open(
            tmp_path / out / "parity" / "metrics.jsonl")) if "loss" in r}, result

    overlapped, _ = train(2, "dp2", f"checkpoint.dir={tmp_path / 'ckpt'}", "checkpoint.interval=2",
                          "parallel.overlap_grad_reduce=true", "parallel.overlap_param_gather=true",
                          "parallel.ddp_bucket_size=20000")
    resumed, result = train(1, "one", f"checkpoint.load={tmp_path / 'ckpt' / 'iter_0000002'}",
                            f"checkpoint.dir={tmp_path / 'ckpt_one'}")
    assert "resumed at step 2" in result.stdout
    assert list(resumed) == [3, 4]
    for step, loss in resumed.items():
        assert abs(loss - overlapped[step]) <= 1e-5 * abs(overlapped[step]), (step, loss)
