#!/usr/bin/env bash
# One command that proves the GPU path on a CUDA box, everything under OUT, in about BUDGET seconds. Steps:
#   environment      every module the steps import; what is missing is installed through scripts/install.sh
#                    (which keeps an installed CUDA torch), except under PROFILE=offline;
#   compile-probe    a tiny function compiled in a subprocess: where torch.compile cannot work (no C compiler,
#                    Python headers or Triton) every later step runs eager, and one line says why;
#   calibrate        scripts/benchmark.py on the training preset: start-up, warm-up (compile) and a warm step;
#   plan             scripts/acceptance_plan.py: from those measurements, each later step's seconds, the
#                    training runs' epochs and samples and the benchmark's timed windows (OUT/plan.json);
#   cuda-tests       pytest -m cuda tests/test_cuda.py;
#   benchmark-model  the supervised and adversarial steps of config.newell8 at 256 px, batch 32: bf16
#                    optimized vs true fp32, images/s, fraction of dense bf16 peak, warm-up, peak memory;
#   pipeline         the input pipeline on this box's cores (scripts/benchmark.py --photo_pipeline);
#   train-supervised, test-supervised, train-adversarial, test-adversarial: CONFIG on the real photos in
#                    DATA (the adversarial half from the supervised snapshot), test.py (flip test) on each;
#   summary          OUT/summary.md and summary.json: what ran, what was skipped and why, the figures, and
#                    what only a GPU can show (scripts/acceptance_summary.py).
# A step runs until its deadline (the plan's seconds of it and of every step before it, so time one leaves
# passes on); one that reaches it is recorded as timed out, one without time or data as skipped with the
# reason, and the chain goes on. Exit code 0 when no step failed or timed out. Logs: OUT/logs/<step>.log.
#
#   bash scripts/gpu-acceptance.sh                  # PROFILE from what imports (below), OUT=outputs/gpu-acceptance
#   PROFILE=offline DATA=gpu-data/lspet-mini bash scripts/gpu-acceptance.sh   # the lent GPU machine (docs)
#   QUICK=1 DEVICE=cpu bash scripts/gpu-acceptance.sh   # the same chain at toy scale on a CPU (CI runs this)
# PROFILE=offline: installs nothing, BUDGET 450 s, DATA gpu-data/lspet-mini (git-ignored), supervised
#   training only unless the plan finds time for the adversarial half, no inference figures.
# PROFILE=full: installs what is missing, BUDGET 1500 s after the install, DATA ../shared/data/lspet-9k.
# PROFILE unset: offline when every module already imports, else full.
# QUICK=1: config.tiny on 64 photos for 2 + 1 epochs, quick benchmarks. COMPILE=auto (default: compile on
# CUDA where the probe passes), 1 (probe on any device) or 0. An OUT that holds files is moved aside only
# with OVERWRITE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PY=("$PYTHON" -m)  # how every Python entry point starts: as a module, from the repository root

MISSING=$("${PY[@]}" scripts.acceptance_plan modules)
PROFILE=${PROFILE:-$([ -z "$MISSING" ] && echo offline || echo full)}
QUICK=${QUICK:-0}
DEVICE=${DEVICE:-cuda}
COMPILE=${COMPILE:-auto}
OUT=${OUT:-outputs/gpu-acceptance}
OVERWRITE=${OVERWRITE:-0}
case "$PROFILE" in
  offline) budget=450; DATA=${DATA:-gpu-data/lspet-mini}; CAL_METHODS=supervised; bench_extra=(--skip_inference) ;;
  full) budget=1500; DATA=${DATA:-../shared/data/lspet-9k}; CAL_METHODS=supervised,adversarial; bench_extra=() ;;
  *) echo "gpu-acceptance.sh: PROFILE=$PROFILE: expected offline or full" >&2; exit 2 ;;
esac
if [ "$QUICK" = 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # toy models: one thread is fastest, two stall on busy cores
  budget=900  # generous: the work itself is capped below, the limits only guard a hang
  CONFIG=${CONFIG:-config.tiny}
  CAL_METHODS=supervised,adversarial
  quick=(--quick --threads 1)
  BENCH_CONFIG=config.tiny
  bench_model=(--config "$BENCH_CONFIG")
  plan_extra=(--max_train 64 --max_val 32 --min_epochs 2 --max_epochs 2 --bench_cap 3)
  val_samples=(--max_val_samples 32)
  test_samples=(--max_samples 32)
  bench_extra=(--skip_inference)
else
  CONFIG=${CONFIG:-config.gpu_lspet}
  quick=()
  BENCH_CONFIG=${BENCH_CONFIG:-config.newell8}
  bench_model=(--config "$BENCH_CONFIG" --batch_size "${BENCH_BATCH:-32}")
  plan_extra=(--min_epochs 3 --max_epochs 40)
  val_samples=()
  test_samples=()
fi
BUDGET=${BUDGET:-$budget}
if ! [[ "$BUDGET" =~ ^[0-9]+$ ]] || [ "$BUDGET" -lt 60 ]; then
  echo "gpu-acceptance.sh: BUDGET=$BUDGET: expected whole seconds, at least 60" >&2
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
echo "gpu-acceptance.sh: PROFILE=$PROFILE QUICK=$QUICK DEVICE=$DEVICE BUDGET=${BUDGET}s DATA=$DATA OUT=$OUT"

record() {  # name exit-code|skipped seconds output limit note: one line of OUT/steps.tsv
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT/steps.tsv"
}
step() {  # name limit output command...: run it into its log with a time limit; record exit code and seconds
  # At the limit the step gets STEP_SIGNAL (INT: pytest still writes its report; the trainers get TERM, on
  # which they save a resumable last.pt first, so the test after them has a checkpoint), KILL 30 s later.
  local name=$1 limit=$2 output=$3 code=0 start=$SECONDS
  shift 3
  echo "== $name (limit ${limit} s)"
  timeout --signal="${STEP_SIGNAL:-INT}" --kill-after=30 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1 || code=$?
  LAST_SECONDS=$((SECONDS - start))
  record "$name" "$code" "$LAST_SECONDS" "$output" "$limit" ""
  echo "   exit $code after $LAST_SECONDS s"
  if [ "$code" != 0 ]; then tail -n 5 "$OUT/logs/$name.log"; fi
}
skip() {  # name reason: record a step that does not run
  record "$1" skipped 0 - 0 "$2"
  echo "== $1: skipped ($2)"
}
PLANNED=0
planned() {  # name output command...: run it until its deadline in the plan, or skip it with the reason
  local name=$1 seconds_var=PLAN_${1//-/_} skip_var=SKIP_${1//-/_}
  if [ "$PLANNED" != 1 ]; then skip "$name" "no plan (logs/plan.log)"; return; fi
  DEADLINE=$((DEADLINE + ${!seconds_var:-0}))
  if [ -n "${!skip_var:-}" ]; then skip "$name" "${!skip_var}"; return; fi
  local limit=$((DEADLINE - SECONDS))
  if [ "$limit" -lt 10 ]; then skip "$name" "budget: ${limit} s left by its deadline"; return; fi
  step "$name" "$limit" "${@:2}"
}

# ---- what this box has
if [ -z "$MISSING" ]; then
  record environment 0 0 - 0 "every required module imports"
elif [ "$PROFILE" = offline ]; then
  record environment 1 0 - 0 "missing: $MISSING (PROFILE=offline installs nothing)"
  echo "gpu-acceptance.sh: missing modules: $MISSING; PROFILE=offline installs nothing, so the steps that need them fail"
else
  step environment 900 - bash scripts/install.sh requirements-dev.txt
fi
BUDGET_START=$SECONDS

# ---- torch.compile: probed once; where it cannot work, every later step runs eager
USE_COMPILE=0
if [ "$COMPILE" = 0 ]; then
  skip compile-probe "COMPILE=0"
elif [ "$COMPILE" = auto ] && [ "$DEVICE" = cpu ]; then
  skip compile-probe "DEVICE=cpu: nothing is compiled on a CPU in this chain (COMPILE=1 probes it)"
else
  probe_timeout=$((BUDGET / 8))
  step compile-probe $((probe_timeout + 60)) "$OUT/probe.json" \
    "${PY[@]}" scripts.acceptance_plan probe --device "$DEVICE" --out "$OUT" --timeout "$probe_timeout"
  COMPILE_WORKS=0 COMPILE_REASON="the probe did not finish (logs/compile-probe.log)"
  if [ -f "$OUT/compile.env" ]; then source "$OUT/compile.env"; fi
  USE_COMPILE=$COMPILE_WORKS
  if [ "$USE_COMPILE" != 1 ]; then
    echo "gpu-acceptance.sh: torch.compile cannot work here ($COMPILE_REASON): every step runs eager"
  fi
fi
bench_compile=() train_compile=()
if [ "$USE_COMPILE" != 1 ]; then
  bench_compile=(--no_compile) train_compile=(--set compile=False)
elif [ "$COMPILE" = 1 ]; then
  train_compile=(--set compile=True)
fi

# ---- calibration and plan: time limits and sizes from measured steps
step calibrate $((BUDGET / 4)) "$OUT/calibrate.json" \
  "${PY[@]}" scripts.benchmark --device "$DEVICE" --config "$CONFIG" --methods "$CAL_METHODS" --skip_pipeline \
  --skip_inference --warmup 1 --iters 3 --repeats 1 ${quick[@]+"${quick[@]}"} \
  ${bench_compile[@]+"${bench_compile[@]}"} --json "$OUT/calibrate.json"
calibration_seconds=$LAST_SECONDS
pipeline_flag=(--no_pipeline)
if "${PY[@]}" scripts.benchmark --help 2>/dev/null | grep -Eq -- '--photo_pipeline([^_[:alnum:]]|$)'; then pipeline_flag=(); fi
step plan 120 "$OUT/plan.json" \
  "${PY[@]}" scripts.acceptance_plan plan --out "$OUT" --budget "$BUDGET" --elapsed $((SECONDS - BUDGET_START)) \
  --calibration "$OUT/calibrate.json" --calibration_seconds "$calibration_seconds" --config "$CONFIG" \
  --bench_config "$BENCH_CONFIG" --data "$DATA" "${plan_extra[@]}" ${pipeline_flag[@]+"${pipeline_flag[@]}"}
if [ -f "$OUT/plan.env" ]; then
  source "$OUT/plan.env"
  PLANNED=1
  cat "$OUT/logs/plan.log"
  if [ "${TRAIN_EAGER:-0}" = 1 ]; then train_compile=(--set compile=False); fi  # the plan found compile not to pay
fi
DEADLINE=$SECONDS

# ---- the CUDA path and the benchmark (no data needed)
planned cuda-tests "$OUT/cuda-tests.xml" \
  "${PY[@]}" pytest -q -m cuda tests/test_cuda.py tests/test_pipeline.py --junitxml "$OUT/cuda-tests.xml"
planned benchmark-model "$OUT/bench-model.json" \
  "${PY[@]}" scripts.benchmark --device "$DEVICE" "${bench_model[@]}" --skip_pipeline \
  --time_budget "${BENCH_TIME_BUDGET:-60}" ${quick[@]+"${quick[@]}"} ${bench_extra[@]+"${bench_extra[@]}"} \
  ${bench_compile[@]+"${bench_compile[@]}"} --json "$OUT/bench-model.json"
# ---- the input pipeline on this box's cores: generated 1280x720 photos, today's path against the direct and
# prepared ones, one worker and this box's default per rank (docs/performance.md, "Input pipeline on full-size
# photos"); the samples are expanded into heatmaps on $DEVICE
planned pipeline "$OUT/bench-pipeline.json" \
  "${PY[@]}" scripts.benchmark --photo_pipeline --device "$DEVICE" ${quick[@]+"${quick[@]}"} \
  --json "$OUT/bench-pipeline.json"

# ---- real photos: supervised, then adversarial from the supervised snapshot; test.py on each
common=(--dataset lspet --path "$DATA" --config "$CONFIG" --device "$DEVICE" --save_root "$OUT/runs"
        --train_split train --max_train_samples "${TRAIN_SAMPLES:-0}" ${val_samples[@]+"${val_samples[@]}"}
        ${train_compile[@]+"${train_compile[@]}"})
score() {  # test.py on run $1's last.pt, the val split, flip test on
  planned "test-$1" "$OUT/test/$1/metrics.json" \
    "${PY[@]}" test --checkpoint "$OUT/runs/$1/last.pt" --dataset lspet --path "$DATA" --split val \
    --device "$DEVICE" --output "$OUT/test/$1" --overwrite ${test_samples[@]+"${test_samples[@]}"}
}
STEP_SIGNAL=TERM planned train-supervised "$OUT/runs/supervised/log.jsonl" \
  "${PY[@]}" train_supervised "${common[@]}" --model_name supervised --epochs "${TRAIN_EPOCHS:-0}" \
  --set "lr_milestones=[${DROP:-1}]" --set "snapshot_epochs=${SNAPSHOT_EPOCHS:-[]}"
score supervised
STEP_SIGNAL=TERM planned train-adversarial "$OUT/runs/adversarial/log.jsonl" \
  "${PY[@]}" train_adversarial "${common[@]}" --model_name adversarial --epochs "${ADV_EPOCHS:-0}" \
  --pretrained "$OUT/runs/supervised/epoch_${SNAPSHOT:-0}.pt" --set "lr_milestones=[${ADV_DROP:-1}]"
score adversarial

summary=(--device "$DEVICE" --profile "$PROFILE" --budget "$BUDGET")
if [ "$QUICK" = 1 ]; then summary+=(--quick); fi
"${PY[@]}" scripts.acceptance_summary "$OUT" "${summary[@]}"
