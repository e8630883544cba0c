"""``python -m xm2_megatron.config RECIPE [key=value ...] [--world-size N]``: print the resolved config.

Prints the config as YAML and exits 0, or prints one ``error: ...`` line and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.config.loader import dump_yaml, load_config, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xm2_megatron.config", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/nano_6m.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=20")
    parser.add_argument("--world-size", type=int, default=None, help="check the layout for N ranks")
    args = parser.parse_intermixed_args(argv)
    cfg = run_cli(load_config, args.recipe, args.overrides, world_size=args.world_size)
    sys.stdout.write(dump_yaml(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
