"""Checkpoints: finding the one to resume from, keep-last-k, a resume that equals the
uninterrupted run, and a save killed with SIGKILL.

The runs use the tiny parity model (fp32, µP, tied, GQA) with a WSD schedule whose warmup
ends and decay starts right after the resume step, each in a fresh process.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.full_disk import error_lines, needs_namespaces, run_on_full_disk
from tests.launch import REPO, trainer_command, run_worker, start_worker, wait_for
from xm2_megatron import checkpoint
from xm2_megatron.checkpoint import (
    LATEST,
    complete_checkpoints,
    find_checkpoint,
    read_checkpoint_config,
)
from xm2_megatron.checkpoint import store
from xm2_megatron.checkpoint.megatron_fixes import check_megatron_version
from xm2_megatron.checkpoint.save_failure import remove_leftovers
from xm2_megatron.training.callbacks.stop import StopSignal

WORKER = Path(__file__).parent / "distributed" / "checkpoint_worker.py"
TOLERANCE = 1e-6


def _fake_checkpoint(directory: Path, step: int, complete: bool = True) -> Path:
    """A folder with the files that make a step folder complete (contents do not matter)."""
    path = directory / checkpoint.step_dir_name(step)
    path.mkdir(parents=True)
    names = ["metadata.json", "common.pt", checkpoint.RNG_FILE] if complete else ["common.pt"]
    for name in names:
        (path / name).write_text("x")
    return path


def _mark(directory: Path, text: str) -> None:
    (directory / LATEST).write_text(text)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _run(out: Path, *args: str) -> dict:
    run_worker(WORKER, [*args, "--out", str(out)])
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------- finding


def test_marker_names_the_checkpoint(tmp_path):
    first, _ = _fake_checkpoint(tmp_path, 1), _fake_checkpoint(tmp_path, 2)
    _mark(tmp_path, "iter_0000001\n")
    assert find_checkpoint(tmp_path) == first


@pytest.mark.parametrize(
    "marker", [None, "", "garbage", "iter_0000009", "iter_0000003", "../iter_0000001"]
)
def test_bad_marker_falls_back_to_newest_complete(tmp_path, marker):
    _fake_checkpoint(tmp_path, 1)
    newest = _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 3, complete=False)  # a partial folder is never picked
    if marker is not None:
        _mark(tmp_path, marker)
    assert find_checkpoint(tmp_path) == newest


def test_temp_folders_are_ignored(tmp_path):
    only = _fake_checkpoint(tmp_path, 1)
    tmp = tmp_path / ".iter_0000002.abcd1234.tmp"
    tmp.mkdir()
    for name in ("metadata.json", "common.pt", checkpoint.RNG_FILE):
        (tmp / name).write_text("x")
    assert complete_checkpoints(tmp_path) == [only]
    assert find_checkpoint(tmp_path) == only


def test_step_folder_and_empty_directory(tmp_path):
    step_dir = _fake_checkpoint(tmp_path / "run", 5)
    assert find_checkpoint(step_dir) == step_dir
    assert find_checkpoint(tmp_path / "missing") is None
    assert find_checkpoint(tmp_path) is None


def test_commit_marks_then_keeps_last(tmp_path):
    for step in (1, 2, 3):
        _fake_checkpoint(tmp_path, step)
    tmp = tmp_path / ".iter_0000004.abcd1234.tmp"
    (tmp / "sub").mkdir(parents=True)
    for name in ("metadata.json", "common.pt", checkpoint.RNG_FILE, "sub/shard"):
        (tmp / name).write_text("x")
    store.commit(tmp, tmp_path / "iter_0000004", keep_last=2)
    assert _names(tmp_path) == ["iter_0000003", "iter_0000004", LATEST]
    assert (tmp_path / LATEST).read_text() == "iter_0000004\n"


def test_other_megatron_versions_are_refused():
    check_megatron_version("0.16.1")
    with pytest.raises(RuntimeError, match="verified for 0.16.1 only"):
        check_megatron_version("0.17.0")


def test_next_save_removes_leftovers(tmp_path):
    (tmp_path / ".iter_0000002.abcd1234.tmp" / "x").mkdir(parents=True)
    (tmp_path / ".latest.abcd1234.tmp").write_text("iter_0000002")
    kept = _fake_checkpoint(tmp_path, 1)
    assert remove_leftovers(tmp_path) == [2]  # the step of the save among them
    assert _names(tmp_path) == [kept.name]


# ----------------------------------------------------------------------------- in process


def test_no_checkpoint_loads_nothing(megatron_runtime, tmp_path):
    assert checkpoint.load_checkpoint(tmp_path, model=[], optimizer=None, scheduler=None) is None


def test_stop_signal_is_agreed(megatron_runtime):
    stop = StopSignal()
    try:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested()
    finally:
        stop.restore()


def test_ctrl_c_asks_to_stop_and_a_second_interrupts(megatron_runtime):
    stop = StopSignal()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested()  # saved at the next step boundary, like SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.restore()


class _RunsACommand:
    """A pickle that would create ``marker`` when unpickled with pickle's full power."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_rng_file_runs_nothing(megatron_runtime, tiny_config, reference, tmp_path):
    import shutil

    import torch

    from xm2_megatron.checkpoint import load_for_inference
    from xm2_megatron.training.state import build_training_state

    step = tmp_path / "iter_0000004"
    shutil.copytree(reference["dir"] / "iter_0000004", step)
    marker = tmp_path / "pwned"
    torch.save({"layout": _RunsACommand(marker)}, step / checkpoint.RNG_FILE)
    load_for_inference(step)  # an export never reads rng.pt
    model, optimizer, scheduler = build_training_state(tiny_config())
    with pytest.raises(checkpoint.CheckpointError, match="rng.pt: not an RNG-state file"):
        checkpoint.load_checkpoint(step, model, optimizer, scheduler)
    assert not marker.exists()


def test_a_damaged_newest_checkpoint_falls_back_to_the_next(megatron_runtime, tiny_config,
                                                             reference, tmp_path, caplog):
    import shutil

    from xm2_megatron.training.state import build_training_state

    directory = tmp_path / "ckpt"
    shutil.copytree(reference["dir"], directory)  # iter_0000003, iter_0000004, latest
    for shard in (directory / "iter_0000004").glob("*.distcp"):
        shard.unlink()
    model, optimizer, scheduler = build_training_state(tiny_config())
    restored = checkpoint.load_checkpoint(directory, model, optimizer, scheduler)
    assert restored["step"] == 3
    assert "skipping" in caplog.text and "iter_0000004" in caplog.text and ".distcp" in caplog.text
    for shard in (directory / "iter_0000003").glob("*.distcp"):
        shard.unlink()
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint under .* loads: .*"
                                                          "iter_0000004.*iter_0000003"):
        checkpoint.load_checkpoint(directory, model, optimizer, scheduler)


def _adam_states(optimizer) -> list:
    """Every main parameter and Adam moment of megatron's (chained) optimizer, in order."""
    inners = [sub.optimizer for sub in getattr(optimizer, "chained_optimizers", [optimizer])]
    return [tensor.detach().clone() for inner in inners for group in inner.param_groups
            for param in group["params"]
            for tensor in (param, inner.state[param]["exp_avg"], inner.state[param]["exp_avg_sq"])]


def test_the_optimizer_state_of_several_gradient_buckets_round_trips(megatron_runtime,
                                                                     tiny_config, tmp_path):
    """With overlap_grad_reduce the gradient buffer is split into buckets (here ~12): the
    distributed optimizer's state saved and loaded back is exactly what it was (megatron
    0.16.1 alone saves the state after the first bucket from wrong offsets)."""
    from xm2_megatron.config import config_to_dict
    from xm2_megatron.data.stream import StageDataStream
    from xm2_megatron.training.state import build_training_state
    from xm2_megatron.training.step import train_step

    cfg = tiny_config("optimizer.use_distributed_optimizer=true", "schedule.warmup_steps=1",
                      "parallel.overlap_grad_reduce=true", "parallel.ddp_bucket_size=20000")
    state = build_training_state(cfg)
    assert len(state.model[0].buffers[0].buckets) > 2
    stream = StageDataStream(cfg, 0, 1)
    for step in range(2):
        train_step(state.model, state.optimizer, state.scheduler, stream.microbatches(step)[1])
    checkpoint.save_checkpoint(tmp_path, 2, state.model, state.optimizer, state.scheduler, {},
                               config_to_dict(cfg), keep_last=1)
    fresh = build_training_state(cfg)
    checkpoint.load_checkpoint(tmp_path, fresh.model, fresh.optimizer, fresh.scheduler)
    saved, loaded = _adam_states(state.optimizer), _adam_states(fresh.optimizer)
    assert len(saved) == len(loaded) == 3 * 26
    assert all(torch.equal(a, b) for a, b in zip(saved, loaded))


def test_optimizer_kind_mismatch_is_explained(megatron_runtime, tiny_config, reference):
    from xm2_megatron.training.state import build_training_state

    cfg = tiny_config("optimizer.use_distributed_optimizer=true")
    model, optimizer, scheduler = build_training_state(cfg)
    with pytest.raises(ValueError, match="use_distributed_optimizer=False"):
        checkpoint.load_checkpoint(reference["dir"], model, optimizer, scheduler)


# ----------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """6 uninterrupted steps, saving after steps 2, 3 and 4 and keeping the last 2."""
    out = tmp_path_factory.mktemp("ckpt_reference")
    result = _run(out / "ref.json", "--save", str(out / "ckpt"), "--save-at", "2", "3", "4",
                  "--keep-last", "2")
    return {"dir": out / "ckpt", **result}


def test_keep_last_and_marker(reference):
    directory = reference["dir"]
    assert _names(directory) == ["iter_0000003", "iter_0000004", LATEST]
    assert (directory / LATEST).read_text().strip() == "iter_0000004"
    config = read_checkpoint_config(directory / "iter_0000004")
    assert config["schedule"]["warmup_steps"] == 4 and config["train"]["global_batch_size"] == 8


def test_resume_equals_uninterrupted(reference, tmp_path):
    """Stopped after step 3 and resumed in a fresh process: the same losses and lrs at
    steps 3-5, across the end of warmup (step 3) and the start of decay (step 4)."""
    resumed = _run(tmp_path / "resumed.json", "--load", str(reference["dir"] / "iter_0000003"))
    assert resumed["restored"] == {
        "step": 3, "stage": "stable", "consumed_samples": {"stable": 24}, "wandb_run_id": "abc",
    }
    assert list(resumed["losses"]) == ["3", "4", "5"]
    for step, loss in resumed["losses"].items():
        assert abs(loss - reference["losses"][step]) <= TOLERANCE, (step, loss)
        assert resumed["lrs"][step] == reference["lrs"][step]
    assert len(set(reference["lrs"].values())) == 5  # warmup, stable and decay lrs all differ
    assert resumed["rng_draws"]["3"] == reference["rng_draws"]["3"]  # python, numpy, torch, tracker


def test_sigkill_during_save_keeps_previous(reference, tmp_path):
    directory = tmp_path / "ckpt"
    out = tmp_path / "killed.json"
    args = ["--steps", "2", "--save", str(directory), "--save-at", "1", "2", "--hang-in-commit",
            "--out", str(out)]
    process = start_worker(WORKER, args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        wait_for(out.with_suffix(".ready").exists, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".iter_0000002.")]
    assert len(leftovers) == 1 and (directory / leftovers[0] / "metadata.json").exists()
    assert (directory / LATEST).read_text().strip() == "iter_0000001"
    assert find_checkpoint(directory) == directory / "iter_0000001"

    resumed = _run(tmp_path / "resumed.json", "--load", str(directory), "--steps", "3",
                   "--save", str(directory), "--save-at", "3")
    assert resumed["restored"]["step"] == 1
    for step, loss in resumed["losses"].items():
        assert abs(loss - reference["losses"][step]) <= TOLERANCE, (step, loss)
    assert _names(directory) == ["iter_0000001", "iter_0000003", LATEST]
    assert (directory / LATEST).read_text().strip() == "iter_0000003"


@needs_namespaces
@pytest.mark.parametrize("async_save, nproc", [
    (False, 1), pytest.param(True, 2, marks=pytest.mark.distributed)], ids=["sync", "async-dp2"])
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous(tmp_path, async_save, nproc):
    disk = tmp_path / "disk"  # holds one checkpoint of this model (3 MB), not two
    result, left = run_on_full_disk(disk, "4500k", trainer_command(
        REPO / "tests" / "distributed" / "parity.yaml", "train.steps=3",
        f"checkpoint.dir={disk}", "checkpoint.interval=1", f"checkpoint.async_save={async_save}",
        f"logging.output_dir={tmp_path / 'runs'}", "logging.wandb_mode=disabled",
        nproc=nproc), cwd=REPO)
    assert result.returncode != 0, result.stderr[-3000:]  # torchrun: its child's 2 is a failure
    assert nproc > 1 or result.returncode == 2
    assert "xm2_megatron/" not in result.stderr  # no traceback from the trainer
    errors = error_lines(result)
    assert len(errors) == nproc and set(errors) == {  # the same line on every rank
        f"error: no space left on device in {disk}: the checkpoint of step 2 was not saved (its "
        f"partial files are removed); {disk / 'iter_0000001'} is kept. Free space there or set "
        "checkpoint.dir elsewhere, then run again to resume"}, result.stderr[-3000:]
    assert sorted(left) == [".lock", "iter_0000001", "latest"]  # no partial temporary folder
