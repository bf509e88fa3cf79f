#!/usr/bin/env bash
# Train the SDK's default model (recipe crres_default) on the prepared shared data.
#   training/experiments/default_model.sh [OUT=runs/crres_default] [extra train.py args...]
# Env: SHARED (default ../shared), DEVICE (cpu|cuda, default cpu), EPOCHS (default: the recipe's),
#      IDENTITIES: keep the N identities with the most crops (default 256; 0 = all 1,254). On a 2-core CPU an
#      epoch of all 24,941 crops takes ~1.5 h and a classifier over 1,254 classes barely moves in one epoch;
#      256 identities (9,055 crops) for 2 epochs fits a session. On a GPU use IDENTITIES=0 and more epochs.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
OUT=${1:-runs/crres_default}; shift || true
PY=${PY:-.venv/bin/python}
IDENTITIES=${IDENTITIES:-256}
DATA=${DATA:-$(SHARED=$SHARED training/experiments/make_data.sh "$IDENTITIES")}
echo "data: $DATA ($(ls "$DATA" | wc -l) identities)"
$PY -m training.train --recipe crres_default --data "$DATA" --out "$OUT" --device "${DEVICE:-cpu}" \
    ${EPOCHS:+--epochs $EPOCHS} --workers 1 "$@"
