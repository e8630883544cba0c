"""PNG curves of a run from its ``metrics.jsonl`` records: loss (validation points, stage
boundaries and batch-size changes as vertical lines), learning rate and throughput.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas), so
no pyplot state or GUI backend is involved.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

STAGE_BOUNDARY_GID = "stage-boundary"
BATCH_CHANGE_GID = "batch-change"


def _train(records: list[dict]) -> list[dict]:
    return [r for r in records if "loss" in r]


def stage_boundaries(records: list[dict]) -> list[tuple[int, str]]:
    """``(step, new stage)`` for each stage change between consecutive training records; the
    step is the last one of the previous stage (the 0-based start step of the new one)."""
    train = _train(records)
    return [(prev["step"], cur["stage"]) for prev, cur in pairwise(train)
            if cur["stage"] != prev["stage"]]


def batch_changes(records: list[dict]) -> list[tuple[int, str]]:
    """``(step, "batch A -> B")`` for each change of the global batch between consecutive
    training records, at the last step logged with the old batch."""
    train = [r for r in _train(records) if "global_batch" in r]
    return [(prev["step"], f"batch {prev['global_batch']} -> {cur['global_batch']}")
            for prev, cur in pairwise(train) if cur["global_batch"] != prev["global_batch"]]


def mark_step(ax: Axes, step: int, label: str, gid: str, style: str = "--") -> None:
    """A vertical line at ``step`` with ``label`` at the top of the axes."""
    ax.axvline(step, color="gray", ls=style, lw=1, gid=gid)
    ax.annotate(label, (step, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                textcoords="offset points", color="gray", fontsize=8)


def step_figure(title: str, ylabel: str) -> tuple[Figure, Axes]:
    """An empty figure of one quantity against the step."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_loss(records: list[dict]) -> Figure:
    """Training loss per step, validation loss as points, a dashed line at each stage boundary
    and a dotted one at each batch-size change."""
    fig, ax = step_figure("loss", "loss")
    train = _train(records)
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    val = [r for r in records if "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", ms=3,
                label="validation")
    for step, stage in stage_boundaries(records):
        mark_step(ax, step, stage, STAGE_BOUNDARY_GID, "--")
    for step, label in batch_changes(records):
        mark_step(ax, step, label, BATCH_CHANGE_GID, ":")
    ax.legend()
    return fig


def plot_series(records: list[dict], key: str, title: str, ylabel: str) -> Figure:
    """One training metric (``key`` of each training record) against the step."""
    fig, ax = step_figure(title, ylabel)
    train = _train(records)
    ax.plot([r["step"] for r in train], [r[key] for r in train], lw=1)
    return fig


def save_plots(records: list[dict], out_dir: str | Path) -> dict[str, Path]:
    """Write ``loss.png``, ``lr.png`` and ``throughput.png`` into ``out_dir``; returns the paths
    by name (none without training records)."""
    if not _train(records):
        return {}
    figures = {
        "loss": plot_loss(records),
        "lr": plot_series(records, "lr", "learning rate", "lr"),
        "throughput": plot_series(records, "tokens_per_s", "throughput", "tokens/s"),
    }
    paths = {}
    for name, fig in figures.items():
        paths[name] = Path(out_dir) / f"{name}.png"
        fig.savefig(paths[name], dpi=120)
    return paths
