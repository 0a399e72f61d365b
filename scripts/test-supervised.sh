#!/usr/bin/env bash
# Evaluate a supervised checkpoint (PCKh@0.5 on MPII valid, PCK@0.2 on LSP test), flip test on.
# Extra flags are passed on to test.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 test.py \
  --checkpoint "${CKPT:-trainmodel/hg8-mpii/best.pt}" \
  --dataset "${DATASET:-mpii}" \
  --path "${DATA:-data/mpii}" \
  --split "${SPLIT:-valid}" \
  --output "${OUT:-outputs/hg8-mpii}" \
  --device "${DEVICE:-auto}" \
  "$@"
