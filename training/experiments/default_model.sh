#!/usr/bin/env bash
# Train the SDK's default model (recipe crres_default) on the prepared shared data.
#   training/experiments/default_model.sh [OUT=runs/crres_default] [extra train.py args...]
# Env: SHARED (default ../shared), DEVICE (cpu|cuda, default cpu), EPOCHS (default: the recipe's 5),
#      IDENTITIES: keep the N identities with the most crops (default 0 = all 1,254, 24,941 crops),
#      SEED (default 1). The shipped model is this script's defaults: 1,945 steps, 88 min on one thread of the
#      2-core AVX-512 development VM (channels_last). The thresholds then come from LFW alone (build_engine
#      never calibrates on identities the checkpoint was trained on):
#   python -m export.build_engine --target fp32 --checkpoint OUT/final.pt --calib runs/data/celeba_glint24_top0 \
#       --out models/crres_default --name crres_default
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
OUT=${1:-runs/crres_default}; shift || true
PY=${PY:-.venv/bin/python}
IDENTITIES=${IDENTITIES:-0}
DATA=${DATA:-$(SHARED=$SHARED training/experiments/make_data.sh "$IDENTITIES")}
echo "data: $DATA ($(ls "$DATA" | wc -l) identities)"
$PY -m training.train --recipe crres_default --data "$DATA" --out "$OUT" --device "${DEVICE:-cpu}" \
    --seed "${SEED:-1}" ${EPOCHS:+--epochs $EPOCHS} --workers 1 "$@"
