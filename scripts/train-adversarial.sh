#!/usr/bin/env bash
# Adversarial PoseNet on MPII with the paper's settings (Chen et al. 2017): 4-stack 512-channel multi-task G
# (config.default_config), pose and confidence discriminators, RMSprop at 2.5e-4, batch 8.
# Every flag is visible; override with env vars (DATASET, DATA, NAME, CONFIG, BATCH, LR, EPOCHS, DEVICE, ...).
# The loss weights stay at the config defaults; to change them add the flags:
#   --alpha 0.004545   # weight of the confidence-discriminator term C (config default 1/220)
#   --beta 0.005556    # weight of the pose-discriminator term P (config default 1/180)
# Fig. 9 ablations: add --no_occlusion (Single+Dis), --no_pose_disc or --no_conf_disc.
# Extra flags are passed on, e.g. --resume trainmodel/<name> to continue, --overwrite to start again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 train_adversarial.py \
  --dataset "${DATASET:-mpii}" \
  --path "${DATA:-data/mpii}" \
  --model_name "${NAME:-adversarial-mpii}" \
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
