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
NGPU=${NGPU:-8}
# torchrun passes SIGTERM, SIGINT, SIGHUP and SIGQUIT on to every rank; SIGUSR1 and SIGUSR2 (a scheduler's
# warning ahead of a time limit) only when named here (torchrun's --signals_to_handle; a torch without that
# flag ignores the variable). Every rank then saves last.pt and stops (README "Preemption").
export PET_SIGNALS_TO_HANDLE="${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2}"
export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-$(( $(nproc) / NGPU > 0 ? $(nproc) / NGPU : 1 ))}"
export POSE_DIST_TIMEOUT_S="${POSE_DIST_TIMEOUT_S:-1800}"
args=(
  --dataset "${DATASET:-mpii}"
  --path "${DATA:-data/mpii}"
  --model_name "${NAME:-adversarial-mpii-ddp}"
  --config "${CONFIG:-config.default_config}"
  ${BATCH:+--batch_size=$BATCH}
  ${LR:+--lr=$LR}
  --epochs "${EPOCHS:-200}"
  --optimizer_type RMSprop
  --print_every 100
  --train_split train
  --device "${DEVICE:-cuda}"
  --workers "${WORKERS:--1}"
  --seed "${SEED:-0}"
  --set "lr_base_batch=${LR_BASE_BATCH:-0}"
  --set "compile=${COMPILE:-True}"
  --set "sync_bn=${SYNC_BN:-False}"
  "$@"
)
# Bad input (a missing dataset, checkpoint or image file, a run directory in the way, ...) stops here, in one
# process, with the trainer's one line and exit code 2, before torchrun starts a process per GPU that would
# each print it, followed by torchrun's traceback. The check moves and writes nothing (README "Bad input").
"${PYTHON:-python3}" train_adversarial.py "${args[@]}" --check "$(( NGPU * ${NNODES:-1} ))"
torchrun \
  --nproc_per_node "$NGPU" \
  --nnodes "${NNODES:-1}" \
  --node_rank "${NODE_RANK:-0}" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" \
  --master_port "${MASTER_PORT:-29500}" \
  train_adversarial.py "${args[@]}"
