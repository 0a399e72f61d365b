#!/usr/bin/env bash
# Supervised stacked-hourglass baseline on MPII with DistributedDataParallel: torchrun starts one process
# per GPU (NCCL; gloo when --device cpu). Only rank 0 logs and writes checkpoints; validation is sharded over
# the ranks and gathered, so it scores exactly what one process would.
# Batch, learning rate and compile come from the preset (config.newell8: 32 images per GPU, RMSprop 2.5e-4
# set for a batch of 6 and scaled by sqrt(global batch / 6), compile on where it works; see its docstring):
# BATCH (per GPU) and LR override them, and the lr is still scaled to the global batch NGPU x NNODES x BATCH.
# Each rank compiles with its share of the cores (TORCHINDUCTOR_COMPILE_THREADS) and waits up to
# POSE_DIST_TIMEOUT_S seconds for the others at a collective (README "Several GPUs and machines").
# Multi-node: run this on every node with NNODES, NODE_RANK (0..NNODES-1) and MASTER_ADDR (node 0) set.
# Extra flags pass through, e.g.: bash scripts/train-supervised-ddp.sh --set sync_bn=True
set -euo pipefail
cd "$(dirname "$0")/.."
# scripts/ddp-launch.sh sets the ranks' environment and the flags both trainers share, and launches: the
# trainer's --check in one process, then torchrun.
source scripts/ddp-launch.sh
launch train_supervised.py "${shared_args[@]}" \
  --model_name "${NAME:-hg8-mpii-ddp}" \
  --config "${CONFIG:-config.newell8}" \
  "$@"
