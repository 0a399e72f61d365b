#!/usr/bin/env bash
# One command that proves the GPU path on a fresh CUDA box, everything under OUT. Every step has a time limit
# (they add up to 25 minutes); a step that reaches it is recorded as timed out. The steps:
#   1. cuda-tests: pytest -m cuda tests/test_cuda.py (G, P and C in fp32/bf16/fp16, channels_last, compile,
#      CUDA <-> CPU checkpoints, exact resume, flip test equal on CPU and CUDA, a one-GPU NCCL trainer run);
#   2. benchmark-model: scripts/benchmark.py for config.newell8 at batch 32 (both steps, inference);
#      benchmark-adversarial: the adversarial step of config.default_config;
#   3. real photos (lspet-9k, config.gpu_lspet): train-supervised EPOCHS epochs with a snapshot at EPOCHS/2,
#      train-adversarial EPOCHS/2 epochs from that snapshot (--pretrained); test-* runs test.py (flip test on)
#      on each last.pt;
#   4. OUT/summary.md and OUT/summary.json: every step's status, exit code, time and figures.
# A failing or timed-out step is recorded and the chain goes on (a later step that needs its output fails
# too); the exit code is 0 only when every step passed. Each step's output is in OUT/logs/<step>.log.
#   bash scripts/gpu-acceptance.sh                   # DATA=../shared/data/lspet-9k OUT=outputs/gpu-acceptance
#   QUICK=1 DEVICE=cpu bash scripts/gpu-acceptance.sh   # the same chain at toy scale on a CPU (CI runs this)
# QUICK=1: the CUDA tests skip without CUDA, the benchmarks are --quick with config.tiny, training is
# config.tiny on 64 photos for 2 + 1 epochs. An OUT that holds files is moved aside only with OVERWRITE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
QUICK=${QUICK:-0}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-../shared/data/lspet-9k}
OUT=${OUT:-outputs/gpu-acceptance}
OVERWRITE=${OVERWRITE:-0}
if [ "$QUICK" = 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # toy models: one thread is fastest, two stall on busy cores
  CONFIG=${CONFIG:-config.tiny}
  EPOCHS=${EPOCHS:-2}
  samples=(--max_train_samples 64 --max_val_samples 32)
  test_samples=(--max_samples 32)
  bench_model=(--quick --config config.tiny --threads 1 --pipeline_samples 40)
  bench_adversarial=(--quick --config config.tiny --threads 1 --methods adversarial --skip_pipeline --skip_inference)
else
  CONFIG=${CONFIG:-config.gpu_lspet}
  EPOCHS=${EPOCHS:-30}
  samples=()
  test_samples=()
  bench_model=(--config config.newell8 --batch_size 32)
  bench_adversarial=(--config config.default_config --methods adversarial --skip_pipeline --skip_inference)
fi
HALF=$((EPOCHS / 2))
DROP=$((EPOCHS * 4 / 5 > HALF ? EPOCHS * 4 / 5 : HALF + 1))  # lr x0.1 after DROP epochs (as reproduce-lspet-mini.sh)
if [ ! -f "$DATA/joints.mat" ]; then
  echo "gpu-acceptance.sh: DATA=$DATA has no joints.mat (expected the lspet-9k folder)" >&2
  exit 2
fi
if [ "$HALF" -lt 1 ]; then
  echo "gpu-acceptance.sh: need EPOCHS >= 2, got EPOCHS=$EPOCHS" >&2
  exit 2
fi
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  if [ "$OVERWRITE" != 1 ]; then
    echo "gpu-acceptance.sh: OUT=$OUT already holds files; set another OUT, or OVERWRITE=1 to move them aside" >&2
    exit 2
  fi
  mv "$OUT" "$OUT.old-$(date +%Y%m%d-%H%M%S)"
fi
mkdir -p "$OUT/logs"
: > "$OUT/steps.tsv"
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}  # deterministic cuBLAS: the exact-resume test

step() {  # name limit_seconds output_file command...: run it into its log, record exit code, seconds, output
  local name=$1 limit=$2 output=$3 code=0 start=$SECONDS
  shift 3
  echo "== $name (limit ${limit} s)"
  timeout --signal=INT --kill-after=30 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1 || code=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$code" $((SECONDS - start)) "$output" >> "$OUT/steps.tsv"
  echo "   exit $code after $((SECONDS - start)) s"
  if [ "$code" != 0 ]; then tail -n 5 "$OUT/logs/$name.log"; fi
}

step cuda-tests 240 "$OUT/cuda-tests.xml" \
  "$PYTHON" -m pytest -q -m cuda tests/test_cuda.py --junitxml "$OUT/cuda-tests.xml"
step benchmark-model 390 "$OUT/bench-model.json" \
  "$PYTHON" -m scripts.benchmark --device "$DEVICE" --data "$DATA" "${bench_model[@]}" --json "$OUT/bench-model.json"
step benchmark-adversarial 210 "$OUT/bench-adversarial.json" \
  "$PYTHON" -m scripts.benchmark --device "$DEVICE" "${bench_adversarial[@]}" --json "$OUT/bench-adversarial.json"

common=(--dataset lspet --path "$DATA" --config "$CONFIG" --device "$DEVICE" --save_root "$OUT/runs"
        --train_split train ${samples[@]+"${samples[@]}"})
step train-supervised 300 "$OUT/runs/supervised/log.jsonl" \
  "$PYTHON" train_supervised.py "${common[@]}" --model_name supervised --epochs "$EPOCHS" \
  --set "lr_milestones=[$DROP]" --set "snapshot_epochs=[$HALF]"
step test-supervised 60 "$OUT/test/supervised/metrics.json" \
  "$PYTHON" test.py --checkpoint "$OUT/runs/supervised/last.pt" --dataset lspet --path "$DATA" --split val \
  --device "$DEVICE" --output "$OUT/test/supervised" --overwrite ${test_samples[@]+"${test_samples[@]}"}
step train-adversarial 240 "$OUT/runs/adversarial/log.jsonl" \
  "$PYTHON" train_adversarial.py "${common[@]}" --model_name adversarial --epochs "$HALF" \
  --pretrained "$OUT/runs/supervised/epoch_$HALF.pt" --set "lr_milestones=[$((DROP - HALF))]"
step test-adversarial 60 "$OUT/test/adversarial/metrics.json" \
  "$PYTHON" test.py --checkpoint "$OUT/runs/adversarial/last.pt" --dataset lspet --path "$DATA" --split val \
  --device "$DEVICE" --output "$OUT/test/adversarial" --overwrite ${test_samples[@]+"${test_samples[@]}"}

quick=()
if [ "$QUICK" = 1 ]; then quick=(--quick); fi
"$PYTHON" -m scripts.acceptance_summary "$OUT" --device "$DEVICE" ${quick[@]+"${quick[@]}"}
