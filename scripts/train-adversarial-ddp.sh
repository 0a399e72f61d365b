#!/usr/bin/env bash
# Adversarial PoseNet (G + pose and confidence discriminators, Algorithm 1) on MPII with
# DistributedDataParallel: torchrun starts one process per GPU (NCCL; gloo when --device cpu). G, P and C
# are each wrapped in DDP; --batch_size is per process (global batch NGPU x NNODES x BATCH). Only rank 0
# logs and writes checkpoints; validation is sharded over the ranks and gathered.
# Multi-node: run this on every node with NNODES, NODE_RANK (0..NNODES-1) and MASTER_ADDR (node 0) set.
# Extra flags pass through, e.g.: bash scripts/train-adversarial-ddp.sh --pretrained trainmodel/hg4/best.pt
set -euo pipefail
cd "$(dirname "$0")/.."
# torchrun passes SIGTERM, SIGINT, SIGHUP and SIGQUIT on to every rank; SIGUSR1 and SIGUSR2 (a scheduler's
# warning ahead of a time limit) only when named here (torchrun's --signals_to_handle; a torch without that
# flag ignores the variable). Every rank then saves last.pt and stops (README "Preemption").
export PET_SIGNALS_TO_HANDLE="${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2}"
torchrun \
  --nproc_per_node "${NGPU:-8}" \
  --nnodes "${NNODES:-1}" \
  --node_rank "${NODE_RANK:-0}" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" \
  --master_port "${MASTER_PORT:-29500}" \
  train_adversarial.py \
  --dataset "${DATASET:-mpii}" \
  --path "${DATA:-data/mpii}" \
  --modelName "${NAME:-adversarial-mpii-ddp}" \
  --config "${CONFIG:-config.default_config}" \
  --batch_size "${BATCH:-8}" \
  --lr "${LR:-2.5e-4}" \
  --epochs "${EPOCHS:-200}" \
  --optimizer_type RMSprop \
  --loss mse \
  --print_every 100 \
  --train_split train \
  --device "${DEVICE:-cuda}" \
  --workers "${WORKERS:--1}" \
  --seed "${SEED:-0}" \
  --set "sync_bn=${SYNC_BN:-False}" \
  "$@"
