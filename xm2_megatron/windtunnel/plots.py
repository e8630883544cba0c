"""A study's figures as PNG (Optuna's matplotlib plots): the optimisation history, the
parameters' importances (fANOVA), slices of the loss along each parameter, and the held-out
loss of every trial at each validation step."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from xm2_megatron.windtunnel.sweep import mean_losses  # noqa: E402

PLOTS = {
    "history": optuna_plots.plot_optimization_history,
    "importance": optuna_plots.plot_param_importances,
    "slice": optuna_plots.plot_slice,
    "intermediate": optuna_plots.plot_intermediate_values,
}


def save_study_plots(study: optuna.Study, directory: str | Path) -> list[Path]:
    """Write each plot the study has enough trials for to ``directory/<plot>.png``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written = []
    for name, plot in PLOTS.items():
        if len(complete) < (2 if name == "importance" else 1):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            axes = plot(study)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), 5)
        path = directory / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


TITLES = {"mup": "µP", "sp": "standard parametrization"}


def sweep_figure(results: list[dict], path: str | Path) -> Path:
    """The µTransfer figure: final held-out loss against log2 lr, a curve per size, one panel
    per parametrization, each curve's minimum marked."""
    means = mean_losses(results)
    vary = results[0]["vary"] if results else "width"
    finite = [v for sizes in means.values() for lrs in sizes.values() for v in lrs.values()
              if v != float("inf")]
    figure, axes = plt.subplots(1, len(means), figsize=(6 * len(means), 4.5), sharey=True,
                                squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (parametrization, sizes) in zip(axes[0], sorted(means.items())):
        for i, (size, lrs) in enumerate(sizes.items()):
            color = colors(i % 10)
            points = [(lr, v) for lr, v in lrs.items() if v != float("inf")]
            if not points:
                continue
            ax.plot(*zip(*points), "o-", color=color, label=f"{vary} {size}", markersize=4)
            best = min(points, key=lambda p: p[1])
            ax.plot(*best, "*", color=color, markersize=14, markeredgecolor="black")
        ax.set_title(TITLES.get(parametrization, parametrization))
        ax.set_xlabel("log2 learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("held-out loss after the last step")
    if finite:
        low = min(finite)
        axes[0][0].set_ylim(low - 0.1, min(max(finite), low + 3.0) + 0.1)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
