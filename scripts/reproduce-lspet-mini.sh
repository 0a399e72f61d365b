#!/usr/bin/env bash
# Supervised vs adversarial on the real lspet-mini photos, end to end, for several seeds.
#   supervised:  config.cpu_small, EPOCHS epochs (lr x0.1 after DROP epochs), snapshot kept at EPOCHS/2
#   adversarial: G from that seed's EPOCHS/2 snapshot, then EPOCHS/2 epochs of Algorithm 1: both see EPOCHS
# Every final checkpoint (last.pt, not the best-on-val one) is tested with test.py (flip test on); one record
# per run goes to results/lspet-mini/<run>.json, then summary.md and curves.png.
# A run whose record RESULTS/<run>.json exists is skipped, with one line saying so: running the command again
# keeps the committed records. REDO=1 trains and tests those runs again and replaces their records.
# 78 minutes on this project's 2-core CPU with the defaults (README "Results"); DEVICE=cuda runs it on a GPU.
# A variant of the adversarial half beside the existing runs, from the same snapshots (README "Results"):
#   SKIP_SUPERVISED=1 ADV_TAG=adversarial-eps3 ADV_SET="epsilon=3.0" bash scripts/reproduce-lspet-mini.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=${DATA:-../shared/data/lspet-mini}
EPOCHS=${EPOCHS:-36}
DROP=${DROP:-$((EPOCHS * 4 / 5))}
SEEDS=${SEEDS:-"0 1"}
CONFIG=${CONFIG:-config.cpu_small}
DEVICE=${DEVICE:-cpu}
RESULTS=${RESULTS:-results/lspet-mini}
RUNS=${RUNS:-trainmodel/reproduce-lspet-mini}
OUTPUTS=${OUTPUTS:-outputs/reproduce-lspet-mini}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-}  # empty = the whole train split; a number = its first N photos (smoke tests)
SKIP_SUPERVISED=${SKIP_SUPERVISED:-0}  # 1 = reuse RUNS/supervised-s<seed>/epoch_<EPOCHS/2>.pt of an earlier run
ADV_TAG=${ADV_TAG:-adversarial}  # method name and run-name prefix of the adversarial runs
ADV_SET=${ADV_SET:-}  # space-separated KEY=VALUE config overrides for the adversarial runs only
REDO=${REDO:-0}  # 1 = run again the runs whose record exists in RESULTS, and replace their records
HALF=$((EPOCHS / 2))
if [ ! -f "$DATA/joints.mat" ]; then
  echo "reproduce-lspet-mini.sh: DATA=$DATA has no joints.mat (expected the lspet-mini folder)" >&2
  exit 2
fi
if [ "$HALF" -lt 1 ] || [ "$DROP" -le "$HALF" ]; then
  echo "reproduce-lspet-mini.sh: need EPOCHS >= 2 and DROP > EPOCHS/2, got EPOCHS=$EPOCHS DROP=$DROP" >&2
  exit 2
fi
if [ "$REDO" != 0 ] && [ "$REDO" != 1 ]; then
  echo "reproduce-lspet-mini.sh: REDO=$REDO; expected 0 (skip the runs already recorded) or 1 (run them again)" >&2
  exit 2
fi
replace=()
if [ "$REDO" = 1 ]; then replace=(--overwrite); fi
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
mkdir -p "$RESULTS" "$RUNS"
common=(--dataset lspet --path "$DATA" --config "$CONFIG" --device "$DEVICE" --save_root "$RUNS" --overwrite
        --train_split train --set cache_images=True ${TRAIN_SAMPLES:+--max_train_samples "$TRAIN_SAMPLES"})

test_and_record() {  # name method seed start_seconds start_epoch
  "$PYTHON" test.py --checkpoint "$RUNS/$1/last.pt" --dataset lspet --path "$DATA" --split val \
    --device "$DEVICE" --output "$OUTPUTS/$1" --overwrite
  "$PYTHON" -m scripts.collect_results record --metrics "$OUTPUTS/$1/metrics.json" \
    --run_dir "$RUNS/$1" --method "$2" --seed "$3" --epochs "$EPOCHS" --wall_seconds $((SECONDS - $4)) \
    --info "start_epoch=$5" --info "config_preset=$CONFIG" --info "date=$(date -u +%F)" \
    --output "$RESULTS/$1.json" ${replace[@]+"${replace[@]}"}
}

recorded() {  # name: whether its record exists and stays (REDO is not 1)
  [ "$REDO" != 1 ] && [ -f "$RESULTS/$1.json" ]
}

skipped() {  # name: the line of a run not run again
  echo "reproduce-lspet-mini.sh: $1 done ($RESULTS/$1.json), skipped; REDO=1 runs it again"
}

adv_set=()
for pair in $ADV_SET; do adv_set+=(--set "$pair"); done

for seed in $SEEDS; do  # the snapshot of every adversarial run to be made, when no supervised run here makes it
  snapshot="$RUNS/supervised-s$seed/epoch_$HALF.pt"
  if recorded "$ADV_TAG-s$seed" || [ -f "$snapshot" ]; then
    continue
  fi
  if [ "$SKIP_SUPERVISED" = 1 ]; then
    echo "reproduce-lspet-mini.sh: SKIP_SUPERVISED=1 but $snapshot is missing (run without it first)" >&2
    exit 2
  fi
  if recorded "supervised-s$seed"; then
    echo "reproduce-lspet-mini.sh: $ADV_TAG-s$seed starts from $snapshot, which is missing, and supervised-s$seed" \
      "that keeps it is recorded ($RESULTS/supervised-s$seed.json); REDO=1 runs both again" >&2
    exit 2
  fi
done

for seed in $SEEDS; do
  snapshot="$RUNS/supervised-s$seed/epoch_$HALF.pt"
  if [ "$SKIP_SUPERVISED" != 1 ]; then
    if recorded "supervised-s$seed"; then
      skipped "supervised-s$seed"
    else
      start=$SECONDS
      "$PYTHON" train_supervised.py "${common[@]}" --model_name "supervised-s$seed" --seed "$seed" \
        --epochs "$EPOCHS" --set "lr_milestones=[$DROP]" --set "snapshot_epochs=[$HALF]"
      test_and_record "supervised-s$seed" supervised "$seed" "$start" 0
    fi
  fi

  if recorded "$ADV_TAG-s$seed"; then
    skipped "$ADV_TAG-s$seed"
    continue
  fi
  start=$SECONDS
  # the adversarial half continues the supervised schedule: its lr drop comes DROP - HALF epochs in
  "$PYTHON" train_adversarial.py "${common[@]}" --model_name "$ADV_TAG-s$seed" --seed "$seed" \
    --pretrained "$snapshot" --epochs "$HALF" --set "lr_milestones=[$((DROP - HALF))]" ${adv_set[@]+"${adv_set[@]}"}
  test_and_record "$ADV_TAG-s$seed" "$ADV_TAG" "$seed" "$start" "$HALF"
done
"$PYTHON" -m scripts.collect_results summary "$RESULTS"
