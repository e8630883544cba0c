"""The µTransfer sweep: train every (size, learning rate) cell of a log2 grid of a proxy family
(width at fixed depth, or depth at fixed width) with µP and with the standard
parametrization, in this process through the real Trainer, and find each size's best lr.

Under µP the best base lr should not move with the size; under SP it should. Each cell's
final held-out loss goes to ``results.jsonl`` as soon as it is measured, so a stopped sweep
continues where it stopped; ``sweep_figure`` draws the classic figure from that file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from xm2_megatron.config import ExperimentConfig, load_config
from xm2_megatron.data.mixture import check_data
from xm2_megatron.training.trainer import EXIT_STOPPED
from xm2_megatron.windtunnel.family import depth_config, width_config
from xm2_megatron.windtunnel.space import recipe_settings
from xm2_megatron.windtunnel.trial import run_trial

PARAMETRIZATIONS = ("mup", "sp")
RESULTS = "results.jsonl"


@dataclass
class SweepSettings:
    recipe: str
    out: Path
    vary: str  # "width" or "depth"
    sizes: list[int]
    log2_lrs: list[float]
    parametrizations: list[str] = field(default_factory=lambda: list(PARAMETRIZATIONS))
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)
    head_dim: int = 16  # width family: heads of this size
    sp_init_std: float = 0.02  # the standard parametrization's init std


@dataclass(frozen=True)
class Cell:
    parametrization: str
    size: int
    log2_lr: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.parametrization}_{self.size}_lr{self.log2_lr:g}_seed{self.seed}"


def cell_config(settings: SweepSettings, base: ExperimentConfig, cell: Cell) -> ExperimentConfig:
    """``base`` at the cell's size, lr 2^log2_lr and parametrization (SP: µP off, init std
    ``sp_init_std``), its run under ``out/runs/<cell>``, no checkpoints."""
    if settings.vary == "width":
        cfg = width_config(base, cell.size, settings.head_dim)
    else:
        cfg = depth_config(base, cell.size)
    lr = 2.0 ** cell.log2_lr
    min_lr = recipe_settings({"lr": lr}, cfg).get("optimizer.min_lr", 0.0)
    mup = (dataclasses.replace(cfg.mup, enabled=True) if cell.parametrization == "mup"
           else dataclasses.replace(cfg.mup, enabled=False, init_std=settings.sp_init_std))
    return dataclasses.replace(
        cfg, name=cell.name, mup=mup,
        optimizer=dataclasses.replace(cfg.optimizer, lr=lr, min_lr=min_lr),
        train=dataclasses.replace(cfg.train, seed=cell.seed),
        checkpoint=dataclasses.replace(cfg.checkpoint, dir=None, load=None),
        logging=dataclasses.replace(cfg.logging, output_dir=str(settings.out / "runs")),
    ).validate(world_size=1)


def read_results(out: Path) -> list[dict]:
    path = Path(out) / RESULTS
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_sweep(settings: SweepSettings) -> int:
    """Train every cell not yet in ``results.jsonl``; 0, or 75 if a stop signal ended it."""
    base = load_config(settings.recipe, settings.overrides, world_size=1)
    check_data(base)
    settings.out.mkdir(parents=True, exist_ok=True)
    done = {r["name"] for r in read_results(settings.out)}
    cells = [Cell(p, size, lr, seed) for p in settings.parametrizations for size in settings.sizes
             for lr in settings.log2_lrs for seed in settings.seeds]
    todo = [cell for cell in cells if cell.name not in done]
    print(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run",
          flush=True)
    for number, cell in enumerate(todo, 1):
        run = run_trial(cell_config(settings, base, cell))
        if run.exit_code == EXIT_STOPPED:
            return EXIT_STOPPED
        loss = run.final_loss
        record = {**dataclasses.asdict(cell), "name": cell.name, "vary": settings.vary,
                  "val_loss": loss if loss is not None and math.isfinite(loss) else None,
                  "exit_code": run.exit_code, "wall_seconds": round(run.wall_seconds, 2),
                  "train_seconds": round(run.train_seconds, 2), "metrics": str(run.metrics)}
        with open(settings.out / RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"cell {number}/{len(todo)} {cell.name}: val_loss {record['val_loss']} "
              f"({run.wall_seconds:.1f} s)", flush=True)
    return 0


def mean_losses(results: list[dict]) -> dict[str, dict[int, dict[float, float]]]:
    """``{parametrization: {size: {log2_lr: mean held-out loss over seeds}}}``; a cell that
    diverged in any seed counts as infinite."""
    grouped: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in results:
        loss = r["val_loss"] if r["val_loss"] is not None else math.inf
        grouped[r["parametrization"]][r["size"]][r["log2_lr"]].append(loss)
    return {p: {size: {lr: sum(v) / len(v) for lr, v in sorted(lrs.items())}
                for size, lrs in sorted(sizes.items())} for p, sizes in grouped.items()}


def best_lrs(results: list[dict]) -> dict[str, dict[int, tuple[float, float]]]:
    """``{parametrization: {size: (best log2 lr, its loss)}}``."""
    return {p: {size: min(lrs.items(), key=lambda item: item[1]) for size, lrs in sizes.items()}
            for p, sizes in mean_losses(results).items()}


def best_lr_shift(results: list[dict]) -> dict[str, float]:
    """How far (in log2 lr, i.e. grid factors of 2 for a step of 1) the best lr moves from
    the smallest size to the largest, per parametrization."""
    out = {}
    for p, sizes in best_lrs(results).items():
        out[p] = sizes[max(sizes)][0] - sizes[min(sizes)][0]
    return out


def best_lr_table(results: list[dict]) -> str:
    """Each size's best log2 lr (and loss) per parametrization, and the shift across sizes."""
    best, shift = best_lrs(results), best_lr_shift(results)
    vary = results[0]["vary"]
    parametrizations = sorted(best)
    sizes = sorted({size for p in best.values() for size in p})
    lines = [f"| {vary} | " + " | ".join(f"{p}: best log2 lr (loss)" for p in parametrizations)
             + " |", "|---|" + "---|" * len(parametrizations)]
    for size in sizes:
        cells = [f"{best[p][size][0]:g} ({best[p][size][1]:.4f})" if size in best[p] else "-"
                 for p in parametrizations]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines.append("| shift, largest - smallest | "
                 + " | ".join(f"{shift[p]:+g}" for p in parametrizations) + " |")
    return "\n".join(lines)
