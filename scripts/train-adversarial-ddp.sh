#!/usr/bin/env bash
# Adversarial PoseNet (G + pose and confidence discriminators, Algorithm 1) on MPII with
# DistributedDataParallel: torchrun starts one process per GPU (NCCL; gloo when --device cpu). G, P and C
# are each wrapped in DDP. Only rank 0 logs and writes checkpoints; validation is sharded over the ranks and
# gathered. Batch (per GPU) and learning rate come from the preset (the paper's: 8, RMSprop 2.5e-4) unless
# BATCH and LR are set; LR_BASE_BATCH scales lr and disc_lr by sqrt(global batch / LR_BASE_BATCH) (default 0:
# as set). Compile is on where it works (COMPILE=False: eager). Each rank compiles with its share of the
# cores (TORCHINDUCTOR_COMPILE_THREADS) and waits up to POSE_DIST_TIMEOUT_S seconds for the others at a
# collective (README "Several GPUs and machines").
# Multi-node: run this on every node with NNODES, NODE_RANK (0..NNODES-1) and MASTER_ADDR (node 0) set.
# Extra flags pass through, e.g.: bash scripts/train-adversarial-ddp.sh --pretrained trainmodel/hg4/best.pt
set -euo pipefail
cd "$(dirname "$0")/.."
# scripts/ddp-launch.sh sets the ranks' environment and the flags both trainers share, and launches: the
# trainer's --check in one process, then torchrun.
source scripts/ddp-launch.sh
launch train_adversarial.py "${shared_args[@]}" \
  --model_name "${NAME:-adversarial-mpii-ddp}" \
  --config "${CONFIG:-config.default_config}" \
  --set "lr_base_batch=${LR_BASE_BATCH:-0}" \
  --set "compile=${COMPILE:-True}" \
  "$@"
