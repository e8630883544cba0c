"""The µP search space of the paper's Table 5 and how a trial's values become recipe overrides."""

from __future__ import annotations

from dataclasses import dataclass

from xm2_megatron.config import ExperimentConfig

# what each searched hyperparameter sets in a recipe
RECIPE_KEYS = {
    "scale_emb": "mup.scale_emb",
    "dim_model_base": "mup.dim_model_base",
    "scale_depth": "mup.scale_depth",
    "init_std": "mup.init_std",
    "lr": "optimizer.lr",
}


@dataclass(frozen=True)
class SearchSpace:
    """Ranges of the paper's appendix search (nano model, 300 trials); ``init_std`` is searched
    only when given a range."""

    scale_emb: tuple[float, float] = (2.0, 20.0)
    dim_model_base: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    scale_depth: tuple[float, float] = (1.0, 5.0)
    lr: tuple[float, float] = (1e-3, 1e-1)  # sampled on a log scale
    init_std: tuple[float, float] | None = None  # sampled on a log scale

    def suggest(self, trial) -> dict[str, float]:
        """One point of the space from an Optuna trial."""
        params = {
            "scale_emb": trial.suggest_float("scale_emb", *self.scale_emb),
            "dim_model_base": trial.suggest_categorical("dim_model_base", list(self.dim_model_base)),
            "scale_depth": trial.suggest_float("scale_depth", *self.scale_depth),
            "lr": trial.suggest_float("lr", *self.lr, log=True),
        }
        if self.init_std is not None:
            params["init_std"] = trial.suggest_float("init_std", *self.init_std, log=True)
        return params


def recipe_values(space: SearchSpace, cfg: ExperimentConfig) -> dict[str, float] | None:
    """``cfg``'s own values of the searched parameters, or None if one lies outside the space."""
    values = {"scale_emb": cfg.mup.scale_emb, "dim_model_base": cfg.mup.dim_model_base,
              "scale_depth": cfg.mup.scale_depth, "lr": cfg.optimizer.lr}
    if space.init_std is not None:
        values["init_std"] = cfg.mup.init_std
    inside = all(getattr(space, name)[0] <= value <= getattr(space, name)[1]
                 for name, value in values.items() if name != "dim_model_base")
    return values if inside and values["dim_model_base"] in space.dim_model_base else None


def recipe_settings(params: dict[str, float], base: ExperimentConfig) -> dict[str, float]:
    """The dotted recipe keys and values that put ``params`` into ``base``;
    ``optimizer.min_lr`` keeps its ratio to the peak lr."""
    settings = {RECIPE_KEYS[name]: value for name, value in params.items()}
    if "lr" in params and base.optimizer.lr > 0:
        settings["optimizer.min_lr"] = base.optimizer.min_lr * params["lr"] / base.optimizer.lr
    return settings


def recipe_overrides(params: dict[str, float], base: ExperimentConfig) -> list[str]:
    """:func:`recipe_settings` as command-line overrides (``key=value``)."""
    return [f"{key}={value!r}" for key, value in recipe_settings(params, base).items()]
