#!/usr/bin/env bash
# The paper's ablation (Chen et al., Fig. 9) as short CPU runs on the built-in synthetic data, several seeds:
#   Single      supervised G, pose heatmaps only          Single+Dis  adversarial, pose heatmaps only
#   Multi       supervised G, pose + occlusion heatmaps   Multi+Dis   adversarial, pose + occlusion
# Every variant trains from scratch for the same EPOCHS x TRAIN_SAMPLES with config.cpu_small; each final
# checkpoint (last.pt) is tested on the synthetic val split (flip test on). Records go to
# results/synthetic-ablation/<run>.json, then summary.md and curves.png. About 20 minutes on a 2-core CPU.
# A run whose record RESULTS/<run>.json exists is skipped, with one line saying so: running the command again
# keeps the committed records. REDO=1 trains and tests those runs again and replaces their records.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EPOCHS=${EPOCHS:-3}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-1440}
SEEDS=${SEEDS:-"0 1"}
CONFIG=${CONFIG:-config.cpu_small}
VAL_SAMPLES=${VAL_SAMPLES:-500}
DEVICE=${DEVICE:-cpu}
RESULTS=${RESULTS:-results/synthetic-ablation}
RUNS=${RUNS:-trainmodel/ablation-synthetic}
OUTPUTS=${OUTPUTS:-outputs/ablation-synthetic}
REDO=${REDO:-0}  # 1 = run again the runs whose record exists in RESULTS, and replace their records
if [ "$REDO" != 0 ] && [ "$REDO" != 1 ]; then
  echo "ablation-synthetic.sh: REDO=$REDO; expected 0 (skip the runs already recorded) or 1 (run them again)" >&2
  exit 2
fi
replace=()
if [ "$REDO" = 1 ]; then replace=(--overwrite); fi
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
mkdir -p "$RESULTS" "$RUNS"
common=(--dataset synthetic --config "$CONFIG" --device "$DEVICE" --save_root "$RUNS" --overwrite --epochs "$EPOCHS"
        --max_train_samples "$TRAIN_SAMPLES" --max_val_samples "$VAL_SAMPLES" --set "lr_milestones=[$EPOCHS]")

for seed in $SEEDS; do
  for variant in Single Multi Single+Dis Multi+Dis; do
    name="${variant/+/-}-s$seed"
    if [ "$REDO" != 1 ] && [ -f "$RESULTS/$name.json" ]; then
      echo "ablation-synthetic.sh: $name done ($RESULTS/$name.json), skipped; REDO=1 runs it again"
      continue
    fi
    case $variant in
      Single) cmd=(train_supervised.py --set predict_occlusion=False) ;;
      Multi) cmd=(train_supervised.py) ;;
      Single+Dis) cmd=(train_adversarial.py --no_occlusion) ;;
      Multi+Dis) cmd=(train_adversarial.py) ;;
    esac
    start=$SECONDS
    "$PYTHON" "${cmd[@]}" "${common[@]}" --model_name "$name" --seed "$seed"
    "$PYTHON" test.py --checkpoint "$RUNS/$name/last.pt" --dataset synthetic --split val --max_samples "$VAL_SAMPLES" \
      --device "$DEVICE" --output "$OUTPUTS/$name" --overwrite
    "$PYTHON" -m scripts.collect_results record --metrics "$OUTPUTS/$name/metrics.json" \
      --run_dir "$RUNS/$name" --method "$variant" --seed "$seed" --epochs "$EPOCHS" \
      --wall_seconds $((SECONDS - start)) --info "train_samples_per_epoch=$TRAIN_SAMPLES" \
      --info "date=$(date -u +%F)" --output "$RESULTS/$name.json" ${replace[@]+"${replace[@]}"}
  done
done
"$PYTHON" -m scripts.collect_results summary "$RESULTS"
