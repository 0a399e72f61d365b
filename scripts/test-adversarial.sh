#!/usr/bin/env bash
# Evaluate an adversarial checkpoint (PCKh@0.5 on MPII valid, PCK@0.2 on LSP test), flip test on.
# test.py uses the generator G only; P and C in the checkpoint are ignored.
# Extra flags are passed on to test.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 test.py \
  --checkpoint "${CKPT:-trainmodel/${NAME:-adversarial-mpii}/best.pt}" \
  --dataset "${DATASET:-mpii}" \
  --path "${DATA:-data/mpii}" \
  --split "${SPLIT:-valid}" \
  --output "${OUT:-outputs/${NAME:-adversarial-mpii}}" \
  --device "${DEVICE:-auto}" \
  "$@"
