#!/usr/bin/env bash
# Does adversarial training help? Supervised vs Adversarial PoseNet on lspet-9k: 9,000 real LSPET photos at
# 128 px (train = the first 8,100, val = the last 900), paired by seed, plus a sweep of the adversarial strength.
#   supervised-s<seed>:   CONFIG from scratch, EPOCHS epochs (lr x0.1 after DROP), snapshot kept at EPOCHS/2
#   adversarial-s<seed>:  G from that seed's EPOCHS/2 snapshot, then EPOCHS/2 epochs of Algorithm 1 with
#                         mse_scale=pixel_mean (see common= below): both methods see EPOCHS epochs of G
#   <sweep name>-s<SWEEP_SEED>: the adversarial half again from the same snapshot, one SWEEP setting changed
# Every final last.pt (never the best-on-val one) is tested with test.py, flip test on; one record per run goes to
# RESULTS/<run>.json (with the per-image hits for the paired bootstrap), then RESULTS/summary.md and curves.png.
#
# Sessions: stop the study at any point (Ctrl-C, a closed session) and start it again with the same command.
# A run whose record RESULTS/<run>.json exists is skipped; a run directory holding last.pt is resumed
# (train_*.py --resume: bit-exact, checkpoint every CKPT_EVERY steps); anything else starts afresh (--overwrite
# moves a half-started run's files aside; nothing is deleted). Nothing here is tuned on anything but lspet-9k.
#
# Sweep (SWEEP_SEED only; adversarial-s<SWEEP_SEED> is its default point): the adversarial half again at other
# strengths of the adversarial terms, read as adv_grad_ratio in the epoch log. results/lspet-9k/design.md has
# the time budget behind EPOCHS, the probes behind the sweep's settings, and how to add a setting.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=${DATA:-../shared/data/lspet-9k}
EPOCHS=${EPOCHS:-16}
DROP=${DROP:-$((EPOCHS * 4 / 5))}
SEEDS=${SEEDS:-"0 1 2"}
SWEEP_SEED=${SWEEP_SEED:-0}
# name:KEY=VALUE,KEY=VALUE ... (alpha, beta as decimals: the paper's 1/220 and 1/180 times a multiplier);
# SWEEP="" skips the sweep
SWEEP=${SWEEP-"sweep-paper:mse_scale=paper sweep-x0.01:alpha=0.0000454545,beta=0.0000555556
 sweep-x0.1:alpha=0.000454545,beta=0.000555556"}
CONFIG=${CONFIG:-config.cpu_small}
DEVICE=${DEVICE:-cpu}
CKPT_EVERY=${CKPT_EVERY:-100}
RESULTS=${RESULTS:-results/lspet-9k}
RUNS=${RUNS:-trainmodel/study-lspet-9k}
OUTPUTS=${OUTPUTS:-outputs/study-lspet-9k}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-}  # empty = the whole train split; a number = its first N photos (smoke tests)
VAL_SAMPLES=${VAL_SAMPLES:-}  # empty = the whole val split (the study's); a number = its first N (smoke tests)
HALF=$((EPOCHS / 2))
if [ ! -f "$DATA/joints.mat" ]; then
  echo "study-lspet-9k.sh: DATA=$DATA has no joints.mat (expected the lspet-9k folder)" >&2
  exit 2
fi
if [ "$HALF" -lt 1 ] || [ "$DROP" -le "$HALF" ]; then
  echo "study-lspet-9k.sh: need EPOCHS >= 2 and DROP > EPOCHS/2, got EPOCHS=$EPOCHS DROP=$DROP" >&2
  exit 2
fi
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
mkdir -p "$RESULTS" "$RUNS" "$OUTPUTS"
# mse_scale=pixel_mean, g_adv_form=nonsaturating, delta=0.5: the settings these runs were made with
# (results/lspet-9k/design.md), pinned so the script reproduces its records whatever the defaults. A sweep
# setting's own --set comes later and wins.
common=(--dataset lspet --path "$DATA" --config "$CONFIG" --device "$DEVICE" --save_root "$RUNS"
        --train_split train --set "checkpoint_every=$CKPT_EVERY" --set mse_scale=pixel_mean
        --set g_adv_form=nonsaturating --set delta=0.5 ${TRAIN_SAMPLES:+--max_train_samples "$TRAIN_SAMPLES"}
        ${VAL_SAMPLES:+--max_val_samples "$VAL_SAMPLES"})

run() {  # name method seed start_epoch epochs trainer [flags of a fresh run...]: train or resume, test, record
  local name=$1 method=$2 seed=$3 start_epoch=$4 epochs=$5 trainer=$6 start=$SECONDS
  shift 6
  if [ -f "$RESULTS/$name.json" ]; then
    echo "study-lspet-9k.sh: $name done ($RESULTS/$name.json), skipped"
    return
  fi
  if [ -f "$RUNS/$name/last.pt" ]; then  # the checkpoint holds the config, data and position of the run
    "$PYTHON" "$trainer" --resume "$RUNS/$name" --epochs "$epochs" --device "$DEVICE"
  else
    "$PYTHON" "$trainer" "${common[@]}" --overwrite --model_name "$name" --seed "$seed" --epochs "$epochs" "$@"
  fi
  "$PYTHON" test.py --checkpoint "$RUNS/$name/last.pt" --dataset lspet --path "$DATA" --split val \
    --device "$DEVICE" --output "$OUTPUTS/$name" --overwrite ${VAL_SAMPLES:+--max_samples "$VAL_SAMPLES"}
  "$PYTHON" -m scripts.collect_results record --metrics "$OUTPUTS/$name/metrics.json" \
    --run_dir "$RUNS/$name" --method "$method" --seed "$seed" --epochs "$EPOCHS" --wall_seconds $((SECONDS - start)) \
    --info "start_epoch=$start_epoch" --info "config_preset=$CONFIG" --info "date=$(date -u +%F)" \
    --output "$RESULTS/$name.json"
}

supervised() {  # seed: EPOCHS from scratch, keeping the EPOCHS/2 snapshot the adversarial halves start from
  run "supervised-s$1" supervised "$1" 0 "$EPOCHS" train_supervised.py \
    --set "lr_milestones=[$DROP]" --set "snapshot_epochs=[$HALF]"
}

adversarial() {  # name method seed [--set KEY=VALUE ...]: the adversarial half from the seed's snapshot
  local name=$1 method=$2 seed=$3 snapshot="$RUNS/supervised-s$3/epoch_$HALF.pt"
  shift 3
  if [ ! -f "$RESULTS/$name.json" ] && [ ! -f "$RUNS/$name/last.pt" ] && [ ! -f "$snapshot" ]; then
    echo "study-lspet-9k.sh: $name needs $snapshot (the supervised run of seed $seed keeps it)" >&2
    exit 2
  fi
  # the adversarial half continues the supervised schedule: its lr drop comes DROP - HALF epochs in
  run "$name" "$method" "$seed" "$HALF" "$HALF" train_adversarial.py --pretrained "$snapshot" \
    --set "lr_milestones=[$((DROP - HALF))]" ${@+"$@"}
}

for seed in $SEEDS; do
  supervised "$seed"
  adversarial "adversarial-s$seed" adversarial "$seed"
done

if [ -n "$SWEEP" ]; then
  supervised "$SWEEP_SEED"
  for setting in $SWEEP; do
    sets=()
    IFS=, read -r -a pairs <<< "${setting#*:}"
    for pair in "${pairs[@]}"; do sets+=(--set "$pair"); done
    adversarial "${setting%%:*}-s$SWEEP_SEED" "${setting%%:*}" "$SWEEP_SEED" "${sets[@]}"
  done
fi
"$PYTHON" -m scripts.collect_results summary "$RESULTS" --baseline supervised --baseline adversarial
