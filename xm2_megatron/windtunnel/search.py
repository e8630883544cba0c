"""The µP hyperparameter search: an Optuna study over ``SearchSpace`` on a proxy recipe, each
trial a training run in this process (imports and start-up paid once per worker).

TPE (multivariate, with the constant liar for parallel workers) suits a few hundred trials of
a mixed space (three continuous ranges, one log-scaled, and the categorical dim_model_base);
CMA-ES has no categorical parameters and needs many more sequential evaluations per
generation. The median pruner stops a trial whose held-out loss at a validation step is worse
than the median of earlier trials at that step. Every worker of a study (a Slurm array task,
or the same command again after a stop) pulls trials from the same storage until the study
holds ``trials`` finished ones. See docs/windtunnel.md.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from xm2_megatron.config import config_to_dict, load_config
from xm2_megatron.data.mixture import check_data
from xm2_megatron.errors import UserError
from xm2_megatron.training.callback import Callback
from xm2_megatron.training.callbacks.stop import StopSignal
from xm2_megatron.training.trainer import EXIT_DIVERGED, EXIT_OK, EXIT_STOPPED
from xm2_megatron.windtunnel.space import SearchSpace, recipe_overrides, recipe_values
from xm2_megatron.windtunnel.storage import Heartbeat, fail_dead_trials, open_storage, worker_identity
from xm2_megatron.windtunnel.trial import TrialRun, run_trial

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
MAX_FAILURES_IN_A_ROW = 3


class SearchError(UserError):
    """The search cannot go on (its trials keep failing)."""


@dataclass
class SearchSettings:
    recipe: str  # the proxy recipe (a file or a packaged name)
    study: str  # the study's name in its storage
    directory: Path  # trials/ and plots/ go here
    storage: str  # see ``storage.open_storage``
    trials: int  # finished (complete or pruned) trials the study should hold
    overrides: list[str] = field(default_factory=list)
    space: SearchSpace = field(default_factory=SearchSpace)
    seed: int | None = None  # the sampler's seed (offset by the Slurm array task id)
    startup_trials: int = 10  # random trials before TPE models the space
    prune: bool = True
    prune_startup_trials: int = 5  # trials that finish before any is pruned
    heartbeat_s: float = 60.0
    grace_s: float = 600.0


class PruneOnValidation(Callback):
    """Reports each held-out loss to the trial and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.pruned_at = trial, None

    def on_validation(self, trainer, step: int, loss: float) -> None:
        self.trial.report(loss if math.isfinite(loss) else float("inf"), step)
        if self.pruned_at is None and step < trainer.cfg.train.steps and self.trial.should_prune():
            self.pruned_at = step
            trainer.request_stop(f"pruned at step {step}", exit_code=EXIT_OK, save=False)


def open_study(settings: SearchSettings) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """The settings' study (created on first use) with its sampler and pruner."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search prints one line a trial
    storage = open_storage(settings.storage)
    seed = settings.seed
    task = worker_identity()["slurm_task"]
    if seed is not None and task and "_" in task:
        seed += int(task.rsplit("_", 1)[1])  # array tasks must not draw the same points
    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=seed,
                                         n_startup_trials=settings.startup_trials)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=settings.prune_startup_trials)
              if settings.prune else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=settings.study, storage=storage, sampler=sampler,
                                pruner=pruner, direction="minimize", load_if_exists=True)
    return study, storage


def _counted(study: optuna.Study, below: int | None = None) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED)
               if below is None or t.number < below)


def _enqueue_recipe_values(settings: SearchSettings, study: optuna.Study, base) -> None:
    """A new study's first trial is the recipe's own values, so the study shows whether the
    search beats them (enqueued by one worker only: outside an array, or its task 0)."""
    task = worker_identity()["slurm_task"]
    values = recipe_values(settings.space, base)
    other_array_task = bool(task) and "_" in task and not task.endswith("_0")
    if study.get_trials(deepcopy=False) or values is None or other_array_task:
        return
    study.enqueue_trial(values, user_attrs={"recipe_values": True})


def _trial_config(settings: SearchSettings, trial: optuna.Trial, base):
    params = settings.space.suggest(trial)
    overrides = [*settings.overrides, *recipe_overrides(params, base),
                 f"name=trial_{trial.number:04d}",
                 f"logging.output_dir={settings.directory / 'trials'}", "checkpoint.dir=null"]
    cfg = load_config(settings.recipe, overrides, world_size=1)
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("config", config_to_dict(cfg))
    trial.set_user_attr("seed", cfg.train.seed)
    trial.set_user_attr("metrics", str(Path(cfg.logging.output_dir) / cfg.name / "metrics.jsonl"))
    return cfg, params


def _record(trial: optuna.Trial, run: TrialRun) -> None:
    trial.set_user_attr("wall_seconds", run.wall_seconds)
    trial.set_user_attr("train_seconds", run.train_seconds)


def _summary(trial_number: int, state: str, run: TrialRun | None, params: dict) -> str:
    values = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
    loss = f"val_loss {run.final_loss:.4f}" if run and run.final_loss is not None else "no loss"
    timing = (f" | {run.wall_seconds:.1f} s, {100 * run.train_seconds / run.wall_seconds:.0f}% in "
              "steps" if run and run.wall_seconds else "")
    return f"trial {trial_number}: {state}, {loss} | {values}{timing}"


def run_search(settings: SearchSettings) -> int:
    """Run trials until the study holds ``settings.trials`` finished ones; returns 0, or 75 when
    a stop signal ended it (run the same command again to go on)."""
    base = load_config(settings.recipe, settings.overrides, world_size=1)
    if base.train.eval_interval is None:
        raise SearchError(f"{settings.recipe}: train.eval_interval is null, but a trial is "
                          "scored by its held-out loss: set it (e.g. train.eval_interval=50)")
    check_data(base)  # a data error is the same for every trial: one line, before any trial
    study, storage = open_study(settings)
    _enqueue_recipe_values(settings, study, base)
    stop = StopSignal()  # between trials; during one, the trial's own handler takes them
    delivered = StopSignal.delivered
    failures = 0
    try:
        while StopSignal.delivered == delivered:
            for number in fail_dead_trials(study, storage, settings.grace_s):
                print(f"trial {number}: marked failed (its worker died)", flush=True)
            if _counted(study) >= settings.trials:
                break
            trial = study.ask()
            trial.set_user_attr("worker", worker_identity())
            if _counted(study, below=trial.number) >= settings.trials:
                trial.set_user_attr("failed_because", "surplus: the study was full")
                study.tell(trial, state=TrialState.FAIL)
                break
            code = _run_one(settings, study, trial, base)
            if code == EXIT_STOPPED:
                return EXIT_STOPPED
            failures = failures + 1 if code else 0
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise SearchError(f"{failures} trials in a row failed (see the last one's "
                                  "error above): stopping the search")
    finally:
        stop.restore()
    # a signal that came as a trial was finishing ends the search after it
    return EXIT_STOPPED if StopSignal.delivered != delivered else 0


def _run_one(settings: SearchSettings, study: optuna.Study, trial: optuna.Trial, base) -> int:
    """Run and tell one trial; 0 when it finished (complete or pruned), 1 failed, 75 stopped."""
    params: dict = {}
    run = None
    try:
        cfg, params = _trial_config(settings, trial, base)
        pruning = PruneOnValidation(trial)
        with Heartbeat(trial, settings.heartbeat_s):
            run = run_trial(cfg, [pruning] if settings.prune else [])
        _record(trial, run)
    except Exception as e:  # a bad point of the space, or a crash inside the run
        trial.set_user_attr("failed_because", f"{type(e).__name__}: {' '.join(str(e).split())}")
        study.tell(trial, state=TrialState.FAIL)
        print(_summary(trial.number, f"failed ({type(e).__name__}: {e})", run, params),
              file=sys.stderr, flush=True)
        return 1
    if run.exit_code == EXIT_STOPPED:
        trial.set_user_attr("failed_because", "stopped by a signal or the time limit")
        study.tell(trial, state=TrialState.FAIL)
        return EXIT_STOPPED
    if pruning.pruned_at is not None or run.exit_code == EXIT_DIVERGED:
        trial.set_user_attr("outcome", "diverged" if run.exit_code == EXIT_DIVERGED else "pruned")
        study.tell(trial, state=TrialState.PRUNED)
        print(_summary(trial.number, trial.user_attrs["outcome"], run, params), flush=True)
        return 0
    if run.exit_code != EXIT_OK or run.final_loss is None or not math.isfinite(run.final_loss):
        trial.set_user_attr("failed_because", f"exit code {run.exit_code}, loss {run.final_loss}")
        study.tell(trial, state=TrialState.FAIL)
        return 1
    study.tell(trial, run.final_loss)
    print(_summary(trial.number, "complete", run, params), flush=True)
    return 0
