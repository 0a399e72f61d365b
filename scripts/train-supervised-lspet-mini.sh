#!/usr/bin/env bash
# The small CPU model on the 2000 real LSPET photos shared beside the repository (train = first 1800).
# Extra flags are passed on, e.g. --resume trainmodel/<name> to continue, --overwrite to start again.
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
python3 train_supervised.py \
  --dataset lspet \
  --path "${DATA:-../shared/data/lspet-mini}" \
  --model_name "${NAME:-lspet-mini-supervised}" \
  --config config.cpu_small \
  --epochs "${EPOCHS:-36}" \
  --train_split train \
  --device cpu \
  --seed "${SEED:-0}" \
  --set cache_images=True \
  "$@"
python3 test.py \
  --checkpoint "trainmodel/${NAME:-lspet-mini-supervised}/best.pt" \
  --dataset lspet \
  --path "${DATA:-../shared/data/lspet-mini}" \
  --split val \
  --output "outputs/${NAME:-lspet-mini-supervised}" \
  --overwrite
