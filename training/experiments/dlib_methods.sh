#!/usr/bin/env bash
# Issue 17's table: every paper's method fine-tuning dlib's pretrained ResNet at equal budget, then LFW.
#   training/experiments/dlib_methods.sh METHOD [SEED=1]     METHOD: bt_m st_m1 st_m1_cam lu_kd maug_logexp lai
# Equal budget = the same starting weights, data (runs/data/dlib_ft/train, from split_identities), seed and
# schedule: 268 optimiser steps (one epoch of 17,205 crops at batch 64) with 64 images through the network per
# step. Two-branch Ling therefore takes 32 HR crops + their 32 LR partners per step, four-branch Lai 16 + 3 x 16;
# the one-branch methods (BT-M, ST-M1 with the frozen HR branch, KD from the cached teacher) take 64.
# Resumes from OUT/last.pt. One thread per run (two runs fit the 2-core VM side by side).
# Env: PY (default .venv/bin/python), DATA, LFW (default ../shared/data/lfw), THREADS (default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=${1:?method}; SEED=${2:-1}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-runs/data/dlib_ft/train}
LFW=${LFW:-../shared/data/lfw}
STEPS=268
case "$METHOD" in
    bt_m|st_m1|st_m1_cam|lu_kd) BATCH=64 ;;
    maug_logexp) BATCH=32 ;;
    lai) BATCH=16 ;;
    *) echo "unknown method $METHOD" >&2; exit 2 ;;
esac
OUT=runs/ft/dlib_${METHOD}_s${SEED}
RESUME=()
[[ -f $OUT/last.pt ]] && RESUME=(--resume "$OUT/last.pt")
export OMP_NUM_THREADS=${THREADS:-1}
$PY -m training.train --recipe "dlib_${METHOD}" --data "$DATA" --out "$OUT" --batch-size $BATCH --steps $STEPS \
    --seed "$SEED" --workers 1 --no-progress "${RESUME[@]}"
$PY -m evaluation --model "$OUT/final.pt" --lfw "$LFW" --protocols hr,btm_stm --backend onnxruntime \
    --out "runs/eval/dlib_${METHOD}_s${SEED}"
