"""``xm2-windtunnel search`` and ``export`` through the real Trainer on the tiny proxy: a
4-trial study with pruning, a killed trial marked failed and the study continued, the best
trial exported to a recipe that loads with exactly its values."""

import json
import os
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.launch import REPO, python_command, run, start, wait_for
from xm2_megatron.config import load_config
from xm2_megatron.windtunnel.storage import open_storage

PROXY = REPO / "tests" / "windtunnel" / "proxy.yaml"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _search_command(directory: Path, study: str, trials: int, *extra: str) -> list[str]:
    return python_command(["-m", "xm2_megatron.tools.windtunnel", "search", PROXY, *extra,
                           "--study", study, "--trials", str(trials), "--dir", directory,
                           "--seed", "0", "--startup-trials", "2", "--prune-startup-trials", "1"])


def _study(directory: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(directory / "study.db"))


def _val_losses(metrics: str) -> dict[int, float]:
    with open(metrics) as f:
        return {r["step"]: r["val_loss"] for r in map(json.loads, f) if "val_loss" in r}


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("search")
    result = run(_search_command(directory, "tiny", 4), timeout=600, check=True)
    return directory, result


def test_four_trials_finish_and_some_are_pruned(study_run):
    directory, result = study_run
    trials = _study(directory, "tiny").get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state in FINISHED for t in trials), [t.state for t in trials]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped no trial"
    for t in pruned:  # stopped at a validation before the last step
        assert max(_val_losses(t.user_attrs["metrics"])) < 6
    assert "study tiny: " in result.stdout and "% of it in training steps" in result.stdout
    assert (directory / "plots" / "history.png").stat().st_size > 0


def test_the_first_trial_is_the_recipes_own_values(study_run):
    directory, _ = study_run
    first, recipe = _study(directory, "tiny").get_trials()[0], load_config(PROXY)
    assert first.user_attrs["recipe_values"] is True
    assert first.params == {"scale_emb": recipe.mup.scale_emb, "lr": recipe.optimizer.lr,
                            "dim_model_base": recipe.mup.dim_model_base,
                            "scale_depth": recipe.mup.scale_depth}


def test_every_trial_records_its_config_metrics_and_seed(study_run):
    directory, _ = study_run
    for trial in _study(directory, "tiny").get_trials():
        attrs = trial.user_attrs
        assert attrs["seed"] == attrs["config"]["train"]["seed"]
        assert attrs["config"]["optimizer"]["lr"] == trial.params["lr"]
        assert attrs["config"]["mup"]["dim_model_base"] == trial.params["dim_model_base"]
        losses = _val_losses(attrs["metrics"])
        assert list(trial.intermediate_values) == sorted(losses)[:len(trial.intermediate_values)]
        if trial.state == TrialState.COMPLETE:
            assert trial.value == losses[6]  # the held-out loss after the last step


def test_export_writes_a_recipe_with_the_best_values(study_run, tmp_path):
    directory, _ = study_run
    study = _study(directory, "tiny")
    best = min((t for t in study.get_trials() if t.state == TrialState.COMPLETE),
               key=lambda t: t.value)
    out = tmp_path / "my_1p2b.yaml"
    command = python_command(["-m", "xm2_megatron.tools.windtunnel", "export", "tiny", "--dir",
                              directory, "--to", "xmodel2_1p2b", "--out", out])
    assert run(command, check=True).returncode == 0
    cfg, target = load_config(out), load_config("xmodel2_1p2b")
    assert cfg.optimizer.lr == best.params["lr"]
    assert cfg.mup.scale_emb == best.params["scale_emb"]
    assert cfg.mup.dim_model_base == best.params["dim_model_base"]
    assert cfg.mup.scale_depth == best.params["scale_depth"]
    assert (cfg.model, cfg.train, cfg.schedule) == (target.model, target.train, target.schedule)
    again = run(command)  # an existing recipe is not overwritten
    assert again.returncode == 2 and "pass --overwrite" in again.stderr


def test_a_killed_trial_is_marked_failed_and_the_study_goes_on(tmp_path):
    """SIGKILL during trial 0 leaves it RUNNING; the same command again fails it and runs
    trials until three have finished."""
    longer = ["train.steps=400", "train.eval_interval=200"]
    process = start(_search_command(tmp_path, "killed", 3, *longer), stdout=open(os.devnull, "w"),
                    stderr=open(tmp_path / "stderr", "w+"), start_new_session=True)
    try:
        metrics = tmp_path / "trials" / "trial_0000" / "metrics.jsonl"
        wait_for(lambda: metrics.exists() and metrics.stat().st_size > 0, process, timeout=300)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert [t.state for t in _study(tmp_path, "killed").get_trials()] == [TrialState.RUNNING]
    result = run(_search_command(tmp_path, "killed", 3, "train.steps=6", "train.eval_interval=2"),
                 timeout=600, check=True)
    assert "trial 0: marked failed (its worker died)" in result.stdout
    trials = _study(tmp_path, "killed").get_trials()
    assert trials[0].state == TrialState.FAIL
    assert "is gone" in trials[0].user_attrs["failed_because"]
    assert sum(t.state in FINISHED for t in trials) == 3
    assert [t.number for t in trials] == [0, 1, 2, 3]
