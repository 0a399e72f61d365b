#!/usr/bin/env bash
# Install what is missing. An existing torch (e.g. a CUDA build on a GPU box) is kept; without one,
# torch==2.13.0 is requested, which on CPU-only machines with a local wheel is the CPU build.
# Usage: bash scripts/install.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
fi
"$PYTHON" -m pip install --quiet -r "${1:-requirements.txt}"
