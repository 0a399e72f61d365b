#!/usr/bin/env bash
# Adversarial PoseNet on MPII with G initialised from a supervised checkpoint of the SAME architecture, e.g.
#   CONFIG=config.default_config NAME=multi-mpii scripts/train-supervised.sh
# (the supervised script's own default, config.newell8, is a different G and is rejected by --pretrained).
# The loss weights stay at the config defaults; to change them add the flags:
#   --alpha 0.004545   # weight of the confidence-discriminator term C (config default 1/220)
#   --beta 0.005556    # weight of the pose-discriminator term P (config default 1/180)
# Extra flags are passed on, e.g. --resume trainmodel/<name> to continue, --overwrite to start again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 train_adversarial.py \
  --pretrained "${PRETRAINED:-trainmodel/multi-mpii/best.pt}" \
  --dataset "${DATASET:-mpii}" \
  --path "${DATA:-data/mpii}" \
  --model_name "${NAME:-adversarial-mpii-pretrained}" \
  --config "${CONFIG:-config.default_config}" \
  --optimizer_type RMSprop \
  --lr "${LR:-2.5e-4}" \
  --batch_size "${BATCH:-8}" \
  --epochs "${EPOCHS:-200}" \
  --print_every 100 \
  --train_split train \
  --device "${DEVICE:-auto}" \
  --workers "${WORKERS:--1}" \
  --seed "${SEED:-0}" \
  "$@"
