#!/usr/bin/env bash
# Install xm2-megatron and what it needs into the active environment, or into ./.venv.
#
# torch is installed first as exactly 2.13.0 where no torch is present: on a CPU machine
# that takes the local CPU wheel; a GPU cluster's own CUDA torch is left in place.
# Usage: source scripts/setup.sh   (or bash scripts/setup.sh; it prints the python to use)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${VIRTUAL_ENV:-}" && -z "${CONDA_PREFIX:-}" ]]; then
    PYTHON_BIN="${PYTHON:-python3.11}"
    command -v "$PYTHON_BIN" >/dev/null || PYTHON_BIN=python3
    if [[ ! -x .venv/bin/python ]]; then
        echo "setup: creating .venv with $($PYTHON_BIN --version)"
        "$PYTHON_BIN" -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi

python - <<'PY' || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

pip_install() { python -m pip install --disable-pip-version-check -q "$@"; }
if ! python -c "import torch" 2>/dev/null; then
    echo "setup: installing torch==2.13.0"
    pip_install "torch==2.13.0"
fi
echo "setup: installing xm2-megatron and its dependencies"
pip_install -e ".[dev]"
python -c "import xm2_megatron, torch, megatron.core; print(f'setup: ok (python {__import__(\"sys\").version.split()[0]}, torch {torch.__version__}, megatron-core {megatron.core.__version__}, xm2-megatron {xm2_megatron.__version__})')"
