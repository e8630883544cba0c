"""Print a recipe's parameter count and training FLOPs per token (no model is built).

    xm2-model-size RECIPE [dotted.key=value ...]            (also: python tools/model_size.py)

RECIPE is a YAML file or a packaged recipe's name, e.g. ``xmodel2_1p2b``.
"""

from __future__ import annotations

import argparse
import sys

from xm2_megatron.cli import run_cli
from xm2_megatron.config import ExperimentConfig, load_config



def report(cfg: ExperimentConfig) -> str:
    """The lines ``xm2-model-size`` prints for ``cfg``."""
    from xm2_megatron.model.counting import count_parameters, training_flops_per_token
    from xm2_megatron.runtime.hardware import device_peak_flops

    h100 = device_peak_flops("H100")  # dense BF16, the MFU denominator
    count = count_parameters(cfg.model)
    flops = training_flops_per_token(cfg.model)
    return "\n".join([
        f"{cfg.name}: {count.total:,} parameters "
        f"({'tied' if cfg.model.tie_embeddings else 'untied'} embeddings)",
        f"  embedding {count.embedding:,} | per layer {count.per_layer:,} x {cfg.model.num_layers}"
        f" | final norm {count.final_norm:,} | output layer {count.output_layer:,}",
        f"  training FLOPs per token at seq {cfg.model.seq_length}: {flops / 1e9:.2f} GFLOP",
        f"  one H100 at 100% / 50% MFU: {h100 / flops:,.0f} / {0.5 * h100 / flops:,.0f} tokens/s",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-model-size", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe YAML file or packaged recipe name")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.num_layers=12")
    args = parser.parse_args(argv)
    cfg = run_cli(load_config, args.recipe, args.overrides)
    print(report(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
