#!/usr/bin/env bash
# Install, then run the test suite (CPU: unit tests and torchrun + gloo multi-process tests;
# GPU tests are skipped without a GPU). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
python -m pytest -q "$@"
