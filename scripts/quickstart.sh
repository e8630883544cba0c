#!/usr/bin/env bash
# Install, then run the paper's pipeline in miniature on real text on this machine's CPU:
# demo corpora -> dedup -> tokenizer -> indexed datasets -> training (warmup, stable, batch-size
# change, decay with 64% SFT data) -> checkpoint -> Hugging Face export -> held-out perplexity
# and plots (xm2_megatron/quickstart/). Arguments go to it, e.g. `--steps 100` or
# `--out runs/qs2`; the synthetic smoke run is `xm2-train recipes/cpu_quickstart.yaml`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
python -m xm2_megatron.quickstart "$@"
