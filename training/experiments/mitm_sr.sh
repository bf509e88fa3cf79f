#!/usr/bin/env bash
# Face SR networks x2 / x4 / x8 for meet-in-the-middle matching (Grm et al. 2023 Sec. 3.3; issue 9), on one CPU
# thread, then the ablation that uses them (python -m training.experiments.mitm_eval).
#   training/experiments/mitm_sr.sh [OUT=runs/sr]
# Env: SHARED (default ../shared), PY (default .venv/bin/python), CONFIG (EDSR size, default small = 8 blocks x
#      32 features), STEPS2 / STEPS4 / STEPS8 (optimisation steps per scale), LIMIT (training crops, 0 = all),
#      LR (default 5e-4: EDSR's 1e-4 is for 3e5 steps; over ~1.5k CPU steps 5e-4 reached 26.5 dB at x4 after 120
#      steps where 1e-4 reached 22.9 dB, bicubic 27.75 dB).
# Each run writes OUT/x<k>/{checkpoint.pt,train_log.csv,sr_x<k>.onnx,sr_x<k>.json}; train_log.csv holds the
# validation PSNR of the SR output and of bicubic upsampling on 256 held-out crops. --resume continues a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
OUT=${1:-runs/sr}
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-small}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for k in 2 4 8; do
    steps_var=STEPS$k
    steps=${!steps_var:-$([ "$k" = 2 ] && echo 1200 || echo 1500)}
    $PY -m training.sr --data "$SHARED/data/train/celeba" --scale "$k" --out "$OUT/x$k" --config "$CONFIG" \
        --lr "${LR:-5e-4}" --steps "$steps" --val-every 250 --log-every 50 --ckpt-every 500 --limit "${LIMIT:-0}" \
        --threads 1 --workers 0 --no-progress
done
