#!/usr/bin/env bash
# Train the SDK's default model (recipe crres_default) on all prepared shared data, then build its bundle.
#   training/experiments/default_model.sh [OUT=runs/crres_default] [extra train.py args...]
# Env: SHARED (default ../shared), DEVICE (cpu|cuda, default cpu), EPOCHS (default: the recipe's).
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
OUT=${1:-runs/crres_default}; shift || true
PY=${PY:-.venv/bin/python}
# One identity folder per person from both sets (celeba_<id>, glint_<name>), as symlinks: nothing is copied.
DATA=${DATA:-runs/data/celeba_glint24}
if [ ! -d "$DATA" ]; then
    mkdir -p "$DATA"
    for d in "$SHARED"/data/train/celeba/*/; do ln -sfn "$(realpath "$d")" "$DATA/celeba_$(basename "$d")"; done
    for d in "$SHARED"/data/train/glint24/*/; do ln -sfn "$(realpath "$d")" "$DATA/glint_$(basename "$d")"; done
fi
$PY -m training.train --recipe crres_default --data "$DATA" --out "$OUT" --device "${DEVICE:-cpu}" \
    ${EPOCHS:+--epochs $EPOCHS} --workers 1 "$@"
