#!/usr/bin/env bash
# GPU side, no network: install what download_wheels.sh fetched into a virtual environment that
# sees the machine's own CUDA torch (--system-site-packages), build Transformer Engine's PyTorch
# binding against that torch, install this project, and check that TE runs fp8 on the GPU.
#
#   bash scripts/gpu/install_offline.sh [WHEEL_DIR] [VENV]   # defaults build/gpu-wheels .venv-gpu
#   source .venv-gpu/bin/activate
set -euo pipefail

WHEELS=${1:-build/gpu-wheels}
VENV=${2:-.venv-gpu}
PYTHON=${PYTHON:-python3}
FLAT="$WHEELS/flat"
t0=$SECONDS
step() { echo "== $1 (at $((SECONDS - t0)) s)"; }

step "join the bundles and check sha256"
rm -rf "$FLAT" && mkdir -p "$FLAT"
cp "$WHEELS"/bundle-*/* "$FLAT/"
for first in "$FLAT"/*.part-00; do
    [ -e "$first" ] || continue
    whole=${first%.part-00}
    cat "$whole".part-* > "$whole" && rm "$whole".part-*
done
(cd "$FLAT" && sha256sum -c --quiet SHA256SUMS)

step "virtual environment $VENV over the system torch"
"$PYTHON" -m venv --system-site-packages "$VENV"
PY="$VENV/bin/python"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA torch'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

step "pinned packages, offline"
grep -vE '^(#|$)' "$FLAT/requirements-gpu.txt" > "$FLAT/requirements.txt"
"$PY" -m pip install --no-index --find-links "$FLAT" setuptools wheel
"$PY" -m pip install --no-index --find-links "$FLAT" -r "$FLAT/requirements.txt"

step "build transformer_engine_torch (C++ against this torch; MAX_JOBS=${MAX_JOBS:-16})"
# cudnn.h, nccl.h and the other CUDA headers come from the nvidia-* pip packages
CPATH=$("$PY" - <<'PY'
import pathlib, nvidia
print(":".join(str(p) for p in sorted(pathlib.Path(nvidia.__path__[0]).glob("*/include"))))
PY
)
export CPATH="$CPATH${CPATH:+:}${CUDA_HOME:-/usr/local/cuda}/include"
export NVTE_PYTORCH_FORCE_BUILD=TRUE   # never download a prebuilt binding
export NVTE_NO_LOCAL_VERSION=1         # no git hash in the version: TE checks versions are equal
export NVTE_CUDA_ARCHS=${NVTE_CUDA_ARCHS:-90}
export MAX_JOBS=${MAX_JOBS:-16}
"$PY" -m pip install --no-index --no-build-isolation --no-deps -v \
    "$FLAT"/transformer_engine_torch-*.tar.gz 2>&1 | tail -n 5

step "this project (editable, no dependencies to fetch)"
"$PY" -m pip install --no-index --no-build-isolation --no-deps -e .

step "check: TE imports, an fp8 linear runs, megatron sees TE"
"$PY" - <<'PY'
import torch, transformer_engine, transformer_engine.pytorch as te
from transformer_engine.common.recipe import DelayedScaling, Float8CurrentScaling
from megatron.core.extensions import transformer_engine as mte
layer = te.Linear(256, 256, params_dtype=torch.bfloat16).cuda()
x = torch.randn(32, 256, device="cuda", dtype=torch.bfloat16)
for recipe in (DelayedScaling(), Float8CurrentScaling()):
    with te.fp8_autocast(enabled=True, fp8_recipe=recipe):
        y = layer(x)
    y.float().sum().backward()
    print(type(recipe).__name__, "ok", tuple(y.shape))
print("transformer_engine", transformer_engine.__version__, "megatron HAVE_TE", mte.HAVE_TE)
PY
step "done"
