#!/usr/bin/env bash
# Do P and C help G at equal G updates? The arms S1, S2, A (and optionally A-literal) on lspet-9k, 3 seeds, each
# arm continuing the supervised run's epoch-16 snapshot to epoch 32 (README "lspet-9k arms" has the design, the
# budget and the decision rule). Stop it at any point and start it again with the same command: recorded runs
# are skipped, half-done ones resumed. Flags (all optional): python3 -m scripts.study_adversarial --help
#   bash scripts/study-adversarial.sh                            # S1, S2, A for seeds 0 1 2
#   bash scripts/study-adversarial.sh --arms S2 A A-literal      # with the optional arm
#   bash scripts/study-adversarial.sh --summary_only             # rebuild results/lspet-9k-arms/summary.md
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736  # glibc: keep freed buffers (docs/performance.md)
exec "${PYTHON:-python3}" -m scripts.study_adversarial "$@"
