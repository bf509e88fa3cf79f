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
# One identity folder per person from both sets (celeba_<id>, glint_<name>), as symlinks: nothing is copied.
DATA=${DATA:-runs/data/celeba_glint24_top${IDENTITIES}}
if [ ! -d "$DATA" ]; then
    mkdir -p "$DATA"
    for d in "$SHARED"/data/train/celeba/*/ "$SHARED"/data/train/glint24/*/; do
        prefix=$(basename "$(dirname "$d")"); [ "$prefix" = celeba ] || prefix=glint
        printf '%s\t%s\t%s\n' "$(find "$d" -maxdepth 1 -type f | wc -l)" "$(realpath "$d")" "${prefix}_$(basename "$d")"
    done | sort -k1,1nr -k3,3 | { if [ "$IDENTITIES" -gt 0 ]; then head -n "$IDENTITIES"; else cat; fi; } |
    while IFS=$'\t' read -r _ path name; do ln -sfn "$path" "$DATA/$name"; done
fi
echo "data: $DATA ($(ls "$DATA" | wc -l) identities)"
$PY -m training.train --recipe crres_default --data "$DATA" --out "$OUT" --device "${DEVICE:-cpu}" \
    ${EPOCHS:+--epochs $EPOCHS} --workers 1 "$@"
