#!/usr/bin/env bash
# Install what is missing, never replacing an existing torch (e.g. a CUDA build on a GPU box):
# - an installed torch below the floor in requirements.txt stops the script with a hint; pip does not touch it;
# - without torch, torch==$TORCH_VERSION (default 2.13.0) is installed first;
# - the other requirements are installed with the installed torch version as a constraint, so pip cannot
#   upgrade or replace it;
# - opencv-python-headless is left out when opencv-python or opencv-contrib-python is already installed
#   (all of them write cv2/; the one present is used).
# Usage: bash scripts/install.sh [requirements file]   (default: requirements.txt; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REQUIREMENTS=${1:-requirements.txt}

# the torch floor, read from requirements.txt (its one source of truth)
FLOOR=$(sed -n 's/^torch[[:space:]]*>=[[:space:]]*\([0-9][0-9.]*\).*/\1/p' requirements.txt)
if [ -z "$FLOOR" ]; then
  echo "install.sh: requirements.txt has no 'torch>=X' line, expected one (the torch floor)" >&2
  exit 2
fi

# one query: "<torch version or none> <ok|old|missing> <installed opencv GUI distribution or none>"
QUERY='
import importlib.metadata as md
import re
import sys


def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def release(v):
    return tuple(int(p) for p in re.match(r"\d+(?:\.\d+)*", v).group().split("."))


torch = version("torch")
state = "missing" if torch is None else "ok" if release(torch) >= release(sys.argv[1]) else "old"
gui = next((d for d in ("opencv-python", "opencv-contrib-python") if version(d)), "none")
print(torch or "none", state, gui)
'
query() { "$PYTHON" -c "$QUERY" "$FLOOR"; }

plan=$(query)
read -r TORCH STATE OPENCV_GUI <<<"$plan"
if [ "$STATE" = missing ]; then
  "$PYTHON" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
  plan=$(query)
  read -r TORCH STATE OPENCV_GUI <<<"$plan"
fi
if [ "$STATE" != ok ]; then
  echo "install.sh: found torch $TORCH, this repository needs torch>=$FLOOR (torch.amp.GradScaler); upgrade it with" \
    "the build for your platform, e.g. CUDA 12.4: $PYTHON -m pip install 'torch>=$FLOOR'" \
    "--index-url https://download.pytorch.org/whl/cu124 (CPU only: .../whl/cpu), then run this script again" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# the requirement lines, -r includes followed (relative to the including file), comments dropped
flatten() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    line=$(printf '%s' "$line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
    case $line in
      "") ;;
      "-r "* | "--requirement "* | "--requirement="*)
        line=${line#-r }; line=${line#--requirement}; line=${line#=}
        line=$(printf '%s' "$line" | sed 's/^[[:space:]]*//')
        flatten "$(dirname "$1")/$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$1"
}

flatten "$REQUIREMENTS" | while IFS= read -r line; do
  name=$(printf '%s' "$line" | sed 's/[[:space:]<>=!~;@[].*//' | tr 'A-Z_.' 'a-z--')
  if [ "$OPENCV_GUI" != none ] && [ "$name" = opencv-python-headless ]; then
    echo "install.sh: $OPENCV_GUI is installed, so opencv-python-headless is not (both provide cv2)" >&2
    continue
  fi
  printf '%s\n' "$line"
done >"$TMP/requirements.txt"
printf 'torch==%s\n' "$TORCH" >"$TMP/constraints.txt"
"$PYTHON" -m pip install --quiet -r "$TMP/requirements.txt" -c "$TMP/constraints.txt"
