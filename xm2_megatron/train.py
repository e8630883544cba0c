"""The training entry point: ``xm2-train RECIPE [key=value ...]`` (or ``python -m
xm2_megatron.train``), as one process, under ``torchrun --nproc_per_node N`` or under
``srun``; the parallel layout comes from the recipe (``parallel.*``) and the world size.

A run whose ``checkpoint.dir`` (else ``checkpoint.load``) holds a checkpoint resumes from it.
Exit codes: 0 done; 2 bad configuration, data or checkpoint; 3 stopped after
``train.max_skipped_steps`` consecutive non-finite steps; 75 saved and stopped on
SIGTERM/SIGUSR1 or ``train.time_limit_minutes`` (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli
from xm2_megatron.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-train", description=__doc__.splitlines()[0],
                                     epilog="Exit codes: 0 done, 2 bad input, 3 diverged, "
                                            "75 stopped to be resumed.")
    parser.add_argument("recipe", help="recipe YAML or packaged recipe name, e.g. cpu_quickstart")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=20")
    args = parser.parse_args(argv)
    from xm2_megatron.runtime import detect_launch_env  # torch: not needed for --help
    from xm2_megatron.training import run_training

    cfg = run_cli(load_config, args.recipe, args.overrides,
                  world_size=detect_launch_env().world_size)

    return run_cli(run_training, cfg)


if __name__ == "__main__":
    sys.exit(main())
