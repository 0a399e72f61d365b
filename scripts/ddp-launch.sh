# Sourced by scripts/train-supervised-ddp.sh and scripts/train-adversarial-ddp.sh, not run on its own: the
# ranks' environment, the flags both trainers take from it, and `launch TRAINER FLAG...`.
NGPU=${NGPU:-8}
# torchrun passes SIGTERM, SIGINT, SIGHUP and SIGQUIT on to every rank; SIGUSR1 and SIGUSR2 (a scheduler's
# warning ahead of a time limit) only when named here (torchrun's --signals_to_handle; a torch without that
# flag ignores the variable). Every rank then saves last.pt and stops (README "Preemption").
export PET_SIGNALS_TO_HANDLE="${PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2}"
export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-$(( $(nproc) / NGPU > 0 ? $(nproc) / NGPU : 1 ))}"
export POSE_DIST_TIMEOUT_S="${POSE_DIST_TIMEOUT_S:-1800}"
# BATCH (per GPU) and LR are passed only when set: otherwise the preset decides
shared_args=(
  --dataset "${DATASET:-mpii}"
  --path "${DATA:-data/mpii}"
  ${BATCH:+--batch_size=$BATCH}
  ${LR:+--lr=$LR}
  --epochs "${EPOCHS:-200}"
  --optimizer_type RMSprop
  --print_every 100
  --train_split train
  --device "${DEVICE:-cuda}"
  --workers "${WORKERS:--1}"
  --seed "${SEED:-0}"
  --set "sync_bn=${SYNC_BN:-False}"
)

# launch TRAINER FLAG...: bad input (a missing dataset, checkpoint or image file, a run directory in the way,
# ...) stops at the first command, in one process, with the trainer's one line and exit code 2, before torchrun
# starts a process per GPU that would each print it, followed by torchrun's traceback. The check moves and
# writes nothing (README "Bad input").
launch() {
  local trainer=$1
  shift
  "${PYTHON:-python3}" "$trainer" "$@" --check "$(( NGPU * ${NNODES:-1} ))"
  torchrun \
    --nproc_per_node "$NGPU" \
    --nnodes "${NNODES:-1}" \
    --node_rank "${NODE_RANK:-0}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" \
    --master_port "${MASTER_PORT:-29500}" \
    "$trainer" "$@"
}
