"""Calibration on a multiple-choice task, as the paper plots it for MMLU: the softmax over the
choices' log-likelihoods (" A" ... " D") is the model's confidence in its answer; items are
binned by confidence and each bin's accuracy is set against it, with the expected calibration
error (ECE: the bins' |accuracy - confidence| weighted by their share of the items)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    items: int
    confidence: float | None  # mean confidence of its items (None when empty)
    accuracy: float | None  # share of its items answered right (None when empty)


@dataclass(frozen=True)
class Calibration:
    items: int
    accuracy: float
    ece: float
    bins: list[Bin]

    def to_dict(self) -> dict:
        return {"items": self.items, "accuracy": self.accuracy, "ece": self.ece,
                "bins": [asdict(b) for b in self.bins]}


def answer_confidence(loglikelihoods: list[float], target: int) -> tuple[float, bool]:
    """The softmax probability of the highest-scoring choice, and whether it is ``target``."""
    top = max(loglikelihoods)
    weights = [math.exp(ll - top) for ll in loglikelihoods]
    best = loglikelihoods.index(top)
    return weights[best] / sum(weights), best == target


def calibrate(samples: list[dict], bins: int = 10) -> Calibration:
    """``samples``: lm-eval's logged items of a multiple-choice task (``filtered_resps`` holds
    each choice's (log-likelihood, is_greedy), ``target`` the right choice's index)."""
    if not samples:
        raise ValueError("no samples to calibrate: run the task with log_samples")
    points = [answer_confidence([ll for ll, _ in s["filtered_resps"]], int(s["target"]))
              for s in samples]
    edges = [i / bins for i in range(bins + 1)]
    out, ece = [], 0.0
    for i in range(bins):
        inside = [(c, ok) for c, ok in points
                  if edges[i] < c <= edges[i + 1] or (i == 0 and c == 0.0)]
        if inside:
            confidence = sum(c for c, _ in inside) / len(inside)
            accuracy = sum(ok for _, ok in inside) / len(inside)
            ece += len(inside) / len(points) * abs(accuracy - confidence)
        else:
            confidence = accuracy = None
        out.append(Bin(edges[i], edges[i + 1], len(inside), confidence, accuracy))
    accuracy = sum(ok for _, ok in points) / len(points)
    return Calibration(len(points), accuracy, ece, out)


def plot_calibration(calibration: Calibration, path: Path, title: str) -> None:
    """Accuracy per confidence bin (bars, with each bin's item count) against the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    full = [b for b in calibration.bins if b.items]
    ax.bar([(b.low + b.high) / 2 for b in full], [b.accuracy for b in full],
           width=full[0].high - full[0].low if full else 0.1, edgecolor="black", alpha=0.7,
           label="accuracy")
    for b in full:
        ax.annotate(str(b.items), ((b.low + b.high) / 2, b.accuracy), ha="center",
                    va="bottom", fontsize=7)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (softmax over the choices)",
           ylabel="accuracy", title=f"{title}\nECE {calibration.ece:.3f}, "
                                    f"accuracy {calibration.accuracy:.3f}, {calibration.items} items")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
