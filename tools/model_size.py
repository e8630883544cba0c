"""Print a recipe's parameter count and training FLOPs per token (no model is built).

    python tools/model_size.py recipes/xmodel2_1p2b.yaml [dotted.key=value ...]
"""

import argparse

from xm2_megatron.config import load_config, run_cli
from xm2_megatron.model.counting import count_parameters, training_flops_per_token

H100_DENSE_BF16 = 989e12  # FLOP/s, the MFU denominator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = run_cli(load_config, args.recipe, args.overrides)
    count = count_parameters(cfg.model)
    flops = training_flops_per_token(cfg.model)
    print(f"{cfg.name}: {count.total:,} parameters "
          f"({'tied' if cfg.model.tie_embeddings else 'untied'} embeddings)")
    print(f"  embedding {count.embedding:,} | per layer {count.per_layer:,} x {cfg.model.num_layers}"
          f" | final norm {count.final_norm:,} | output layer {count.output_layer:,}")
    print(f"  training FLOPs per token at seq {cfg.model.seq_length}: {flops / 1e9:.2f} GFLOP")
    print(f"  one H100 at 100% / 50% MFU: {H100_DENSE_BF16 / flops:,.0f} / "
          f"{0.5 * H100_DENSE_BF16 / flops:,.0f} tokens/s")


if __name__ == "__main__":
    main()
