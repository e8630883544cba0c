#!/usr/bin/env bash
# Install, then run the test suite (CPU: unit tests and torchrun + gloo multi-process tests;
# GPU tests are skipped without a GPU), after fetching the demo corpora. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
bash scripts/install_slurm.sh || echo "test: Slurm not installed; tests/slurm will be skipped" >&2   # a real Slurm for tests/slurm
bash scripts/fetch_demo_data.sh data/demo   # real text for the data tests (cached after the first run)
python -m pytest -q --durations=30 "$@"
