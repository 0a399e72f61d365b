#!/usr/bin/env bash
# README command (a): install what is missing, train a small G on the built-in synthetic dataset on CPU
# for a few minutes, test it (flip test on), print the PCKh table and where the pictures are.
# config.cpu_small with one stack of 96 channels and Adam at 2e-3: 1.1 GFLOP per training image against the
# preset's 3.2 (two stacks of 128), so the whole demo fits in 10 minutes on a 2-core CPU without native bf16,
# where it trains in fp32 (README "The demo").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh
# glibc returns large activation buffers to the OS after every step unless told not to (~30% on CPU)
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
"$PYTHON" train_supervised.py \
  --dataset synthetic \
  --config config.cpu_small \
  --model_name demo --overwrite \
  --device "${DEVICE:-cpu}" \
  --epochs "${EPOCHS:-6}" \
  --max_train_samples "${TRAIN_SAMPLES:-3400}" \
  --max_val_samples 500 \
  --set num_stacks=1 --set channels=96 --set lr=2e-3 \
  --set "lr_milestones=[5]"
"$PYTHON" test.py \
  --checkpoint trainmodel/demo/best.pt \
  --dataset synthetic \
  --split val \
  --output outputs/demo \
  --overwrite
echo "pictures: outputs/demo/pictures/  curves: trainmodel/demo/curves.png  PCKh curve: outputs/demo/pck_curve.png"
