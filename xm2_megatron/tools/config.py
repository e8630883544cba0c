"""Print a recipe resolved (``extends`` and overrides applied) as YAML, or one ``error:`` line.

    xm2-config RECIPE [key=value ...] [--world-size N]       (also: python -m xm2_megatron.tools.config)

RECIPE is a YAML file or a packaged recipe's name (``xm2-config --list`` names them). Exits 0
with the config on stdout, or prints one ``error: ...`` line and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli
from xm2_megatron.config import dump_yaml, load_config, packaged_recipes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-config", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?",
                        help="recipe YAML file or packaged recipe name, e.g. nano_6m")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=20")
    parser.add_argument("--world-size", type=int, default=None, help="check the layout for N ranks")
    parser.add_argument("--list", action="store_true", help="print the packaged recipes' names")
    args = parser.parse_intermixed_args(argv)
    if args.list:
        print("\n".join(packaged_recipes()))
        return 0
    if args.recipe is None:
        parser.error("the following arguments are required: recipe")
    cfg = run_cli(load_config, args.recipe, args.overrides, world_size=args.world_size)
    sys.stdout.write(dump_yaml(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
