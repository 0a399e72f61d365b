#!/usr/bin/env bash
# Install the test dependencies, lint, and run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh requirements-dev.txt
"$PYTHON" -m ruff check .
"$PYTHON" -m pytest -q "$@"
