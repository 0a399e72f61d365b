#!/usr/bin/env bash
# Adversarial PoseNet, small CPU model, on the 2000 real LSPET photos shared beside the repository
# (train = first 1800). Evaluate afterwards with
#   CKPT=trainmodel/lspet-mini-adversarial/best.pt DATASET=lspet DATA=../shared/data/lspet-mini SPLIT=val \
#   OUT=outputs/lspet-mini-adversarial scripts/test-adversarial.sh
# The loss weights stay at the config defaults; to change them add --alpha (C, 1/220) / --beta (P, 1/180).
# Extra flags are passed on, e.g. --resume trainmodel/<name> to continue, --overwrite to start again.
set -euo pipefail
cd "$(dirname "$0")/.."
# glibc returns large activation buffers to the OS after every step unless told not to (~30% on CPU)
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
python3 train_adversarial.py \
  --dataset lspet \
  --path "${DATA:-../shared/data/lspet-mini}" \
  --model_name "${NAME:-lspet-mini-adversarial}" \
  --config config.cpu_small \
  --epochs "${EPOCHS:-36}" \
  --train_split train \
  --device cpu \
  --seed "${SEED:-0}" \
  --set cache_images=True \
  "$@"
