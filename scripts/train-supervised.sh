#!/usr/bin/env bash
# Supervised stacked-hourglass baseline on MPII (Newell et al.'s 8-stack model; use config.default_config
# for the paper's 4-stack 512-channel generator). Every flag is visible; edit or override with env vars.
# Batch and learning rate come from the preset (config.newell8: 32 per GPU, RMSprop 2.5e-4 set for a batch of 6
# and scaled by sqrt(batch / 6); see its docstring); BATCH and LR override them.
# Extra flags are passed on, e.g. --resume trainmodel/<name> to continue, --overwrite to start again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 train_supervised.py \
  --dataset "${DATASET:-mpii}" \
  --path "${DATA:-data/mpii}" \
  --model_name "${NAME:-hg8-mpii}" \
  --config "${CONFIG:-config.newell8}" \
  ${BATCH:+--batch_size=$BATCH} \
  ${LR:+--lr=$LR} \
  --epochs "${EPOCHS:-200}" \
  --optimizer_type RMSprop \
  --print_every 100 \
  --train_split train \
  --device "${DEVICE:-auto}" \
  --workers "${WORKERS:--1}" \
  --seed "${SEED:-0}" \
  "$@"
