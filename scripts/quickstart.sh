#!/usr/bin/env bash
# Install, then train the embedded CPU default (recipes/cpu_quickstart.yaml) on this machine.
# Extra arguments are dotted overrides, e.g. `bash scripts/quickstart.sh train.steps=60`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
python -m xm2_megatron.train recipes/cpu_quickstart.yaml "$@"
