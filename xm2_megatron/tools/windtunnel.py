"""The wind tunnel: µP hyperparameters searched on a small proxy and carried to a large recipe.

    xm2-windtunnel search RECIPE [key=value ...] --study NAME --trials N   an Optuna study
    xm2-windtunnel export NAME --to xmodel2_1p2b --out my_1p2b.yaml        its best, transferred
    xm2-windtunnel plots NAME                                             its figures (PNG)
    xm2-windtunnel sweep RECIPE --vary width --sizes 32 64 128 256 --lrs -10 -9 ... -4
                                                                        the µTransfer figure
    xm2-windtunnel coord-check RECIPE --widths 64 128 256                 µP's coordinate check

A study lives in ``--storage`` (default ``<dir>/study.db``, SQLite; a ``.journal`` path is
Optuna's journal file for shared file systems; any SQLAlchemy URL), its trials' runs and
plots in ``--dir`` (default ``runs/windtunnel/NAME``). Running ``search`` again, or in more
processes (``slurm/windtunnel.sh``), continues the same study. See docs/windtunnel.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xm2_megatron.cli import run_cli

EXIT_STOPPED = 75


def _study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None,
                        help="trials and plots go here (default runs/windtunnel/STUDY)")
    parser.add_argument("--storage", default=None,
                        help="SQLite file, .journal file or SQLAlchemy URL (default "
                             "DIR/study.journal if it exists, else DIR/study.db)")


def _where(args, study: str) -> tuple[Path, str]:
    """The study's folder and storage: ``--storage``, else the folder's ``study.journal``
    (what ``slurm/windtunnel.sh`` uses) when it exists, else its ``study.db``."""
    directory = args.dir or Path("runs") / "windtunnel" / study
    journal = directory / "study.journal"
    return directory, args.storage or str(journal if journal.exists() else directory / "study.db")


def _load_study(args):
    import optuna

    from xm2_megatron.errors import UserError
    from xm2_megatron.windtunnel.storage import open_storage

    directory, storage = _where(args, args.study)
    if "://" not in storage and not Path(storage).exists():
        raise UserError(f"study storage {storage} does not exist (run `xm2-windtunnel search` "
                        "first, or pass --storage/--dir)")
    try:
        return optuna.load_study(study_name=args.study, storage=open_storage(storage)), directory
    except KeyError:
        raise UserError(f"{storage} holds no study named {args.study!r}") from None


def _search(args) -> int:
    from xm2_megatron.windtunnel.plots import save_study_plots
    from xm2_megatron.windtunnel.search import SearchSettings, open_study, run_search
    from xm2_megatron.windtunnel.space import SearchSpace

    directory, storage = _where(args, args.study)
    space = SearchSpace(init_std=(0.02, 0.2) if args.search_init_std else None)
    settings = SearchSettings(recipe=args.recipe, study=args.study, directory=directory,
                              storage=storage, trials=args.trials, overrides=args.overrides,
                              space=space, seed=args.seed, startup_trials=args.startup_trials,
                              prune=not args.no_prune,
                              prune_startup_trials=args.prune_startup_trials)
    code = run_search(settings)
    study, _ = open_study(settings)
    _report(study, directory, save_study_plots(study, directory / "plots"))
    return code


def _report(study, directory: Path, plots: list[Path]) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    print(f"study {study.study_name}: " + ", ".join(f"{n} {k}" for k, n in states.items() if n))
    timed = [t for t in trials if "wall_seconds" in t.user_attrs]
    if timed:
        wall = sum(t.user_attrs["wall_seconds"] for t in timed)
        steps = sum(t.user_attrs["train_seconds"] for t in timed)
        print(f"trial time {wall:.0f} s, {100 * steps / wall:.0f}% of it in training steps")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = min(complete, key=lambda t: t.value)
        print(f"best: trial {best.number}, val_loss {best.value:.4f}, "
              + ", ".join(f"{k}={v:.4g}" for k, v in best.params.items()))
    for path in plots:
        print(f"wrote {path}")


def _export(args) -> int:
    from xm2_megatron.windtunnel.export import export_recipe

    study, _ = _load_study(args)
    params = export_recipe(study, args.to, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: {args.to} with " + ", ".join(f"{k}={v:.4g}" for k, v in params.items()))
    return 0


def _plots(args) -> int:
    from xm2_megatron.windtunnel.plots import save_study_plots

    study, directory = _load_study(args)
    _report(study, directory, save_study_plots(study, directory / "plots"))
    return 0


def _sweep(args) -> int:
    from xm2_megatron.windtunnel.plots import sweep_figure
    from xm2_megatron.windtunnel.sweep import SweepSettings, best_lr_table, read_results, run_sweep

    out = args.out or Path("runs") / "windtunnel" / f"sweep_{args.vary}"
    settings = SweepSettings(recipe=args.recipe, out=out, vary=args.vary, sizes=args.sizes,
                             log2_lrs=args.lrs, parametrizations=args.parametrizations,
                             seeds=args.seeds, overrides=args.overrides, head_dim=args.head_dim,
                             sp_init_std=args.sp_init_std)
    code = run_sweep(settings)
    results = read_results(out)
    if results:
        table = best_lr_table(results)
        print(table)
        (out / "best_lr.md").write_text(table + "\n")
        print(f"wrote {sweep_figure(results, out / 'sweep.png')}")
    return code


def _coord_check(args) -> int:
    from xm2_megatron.config import load_config
    from xm2_megatron.runtime import single_process_runtime
    from xm2_megatron.windtunnel.coord_check import coordinate_check, depth_check

    base = load_config(args.recipe, args.overrides)
    with single_process_runtime(base.train.seed):
        if args.depths:
            results = depth_check(base, args.depths, args.steps)
        else:
            results = coordinate_check(base, args.widths, args.steps)
    sites = ["embedding", "last_layer", "logits"]
    key = "depth" if args.depths else "width"
    print(f"{key:>6} " + " ".join(f"{s:>11}" for s in sites))
    for size, rms in results.items():
        print(f"{size:>6} " + " ".join(f"{rms[s]:>11.4g}" for s in sites))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xm2-windtunnel", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:6]))
    commands = parser.add_subparsers(dest="command", required=True)

    search = commands.add_parser("search", help="run (or continue) an Optuna study on a proxy")
    search.add_argument("recipe", help="the proxy recipe (file or packaged name)")
    search.add_argument("overrides", nargs="*", help="dotted overrides for every trial")
    search.add_argument("--study", required=True, help="the study's name")
    search.add_argument("--trials", type=int, required=True,
                        help="finished (complete or pruned) trials the study should hold")
    search.add_argument("--seed", type=int, default=None, help="sampler seed (reproducible search)")
    search.add_argument("--startup-trials", type=int, default=10,
                        help="random trials before TPE models the space (default 10)")
    search.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    search.add_argument("--prune-startup-trials", type=int, default=5,
                        help="trials that finish before the median pruner stops any (default 5)")
    search.add_argument("--search-init-std", action="store_true",
                        help="also search mup.init_std in [0.02, 0.2] (log scale)")
    _study_args(search)
    search.set_defaults(run=_search)

    export = commands.add_parser("export", help="write a recipe with the study's best values")
    export.add_argument("study")
    export.add_argument("--to", required=True, help="the target recipe, e.g. xmodel2_1p2b")
    export.add_argument("--out", required=True, type=Path, help="the recipe to write")
    export.add_argument("--overwrite", action="store_true")
    _study_args(export)
    export.set_defaults(run=_export)

    plots = commands.add_parser("plots", help="write the study's plots (DIR/plots/*.png)")
    plots.add_argument("study")
    _study_args(plots)
    plots.set_defaults(run=_plots)

    sweep = commands.add_parser("sweep", help="µTransfer: held-out loss over a (size, lr) grid")
    sweep.add_argument("recipe", help="the proxy recipe")
    sweep.add_argument("overrides", nargs="*", help="dotted overrides for every cell")
    sweep.add_argument("--vary", choices=["width", "depth"], default="width")
    sweep.add_argument("--sizes", type=int, nargs="+", required=True,
                       help="hidden sizes (--vary width) or layer counts (--vary depth)")
    sweep.add_argument("--lrs", type=float, nargs="+", required=True,
                       help="log2 learning rates, e.g. -10 -9 -8 -7 -6 -5")
    sweep.add_argument("--parametrizations", nargs="+", choices=["mup", "sp"],
                       default=["mup", "sp"])
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0])
    sweep.add_argument("--head-dim", type=int, default=16, help="head size of the width family")
    sweep.add_argument("--sp-init-std", type=float, default=0.02,
                       help="init std of the standard-parametrization cells (default 0.02)")
    sweep.add_argument("--out", type=Path, default=None,
                       help="results, runs and figure (default runs/windtunnel/sweep_VARY)")
    sweep.set_defaults(run=_sweep)

    coord = commands.add_parser("coord-check", help="activation RMS across widths or depths")
    coord.add_argument("recipe")
    coord.add_argument("overrides", nargs="*")
    coord.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    coord.add_argument("--depths", type=int, nargs="+", default=None,
                       help="vary the depth instead of the width")
    coord.add_argument("--steps", type=int, default=3, help="constant-lr steps before measuring")
    coord.set_defaults(run=_coord_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.run, args)


if __name__ == "__main__":
    sys.exit(main())
