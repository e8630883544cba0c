"""Carry a study's best µP hyperparameters to a target recipe (µTransfer).

Under µP the searched values are width-independent: ``scale_emb``, ``dim_model_base``,
``scale_depth``, ``init_std`` and the base learning rate (hidden matrices then get
``lr / width_mult`` at the target's width) go over as they are. What the proxy's run length
and batch fix is not transferred: the target keeps its own batch size and batch-size
schedule, steps, warmup and decay, and ``min_lr`` keeps its ratio to the lr.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from xm2_megatron import atomic
from xm2_megatron.config import load_config, resolve_recipe
from xm2_megatron.errors import UserError
from xm2_megatron.windtunnel.space import RECIPE_KEYS, recipe_settings


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The complete trial with the lowest held-out loss."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"study {study.study_name!r} has no complete trial yet")
    return min(complete, key=lambda t: t.value)


def _extends(target: str, out: Path) -> str:
    """How ``out`` names ``target`` in ``extends``: a packaged name stays a name, a file is
    given relative to ``out``'s folder."""
    path = resolve_recipe(target)
    if not Path(target).exists():
        return target
    return os.path.relpath(path.absolute(), out.absolute().parent)


def export_recipe(study: optuna.Study, target: str, out: str | Path,
                  overwrite: bool = False) -> dict[str, float]:
    """Write ``out``: ``target`` with the best trial's hyperparameters; returns them."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists: pass --overwrite to replace it")
    trial = best_trial(study)
    base = load_config(target)
    sections: dict[str, dict] = {}
    for key, value in recipe_settings(dict(trial.params), base).items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    header = (f"# {target} with the µP hyperparameters of trial {trial.number} of study "
              f"{study.study_name!r} (held-out loss {trial.value:.4f} on its proxy), written by "
              "xm2-windtunnel export.\n# Transferred: "
              + ", ".join(RECIPE_KEYS[name] for name in trial.params)
              + " (and optimizer.min_lr at its ratio to the lr). Kept from the target: the batch "
              "size, steps, warmup and decay.\n")
    body = yaml.safe_dump({"extends": _extends(target, out), **sections}, sort_keys=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, header + body)
    load_config(out)  # what was written loads and validates
    return dict(trial.params)
