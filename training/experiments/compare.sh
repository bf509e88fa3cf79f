#!/usr/bin/env bash
# Equal-budget paper comparisons of issue 6 at small scale: every variant of one comparison trains the same
# backbone on the same data for the same number of epochs with the same optimiser, head and schedule; only the
# method (resolution sampler, branches, losses, backbone for Lu) changes. Then each run is evaluated on LFW.
#
#   training/experiments/compare.sh knoche|ling|lai|lu [OUT_ROOT=runs/compare] [VARIANT ...]
#
# Env (defaults sized for a 2-core CPU session; on a GPU use DEVICE=cuda IDENTITIES=0 EPOCHS=16 LIMIT_PAIRS=0):
#   SEEDS        seeds per variant (default "1 2"; the issue asks for >= 2)
#   IDENTITIES   the N identities of celeba+glint24 with most crops (default 256, as the default model)
#   EPOCHS       default 1;   MAX_STEPS  stop each run early (default: none)
#   LIMIT_PAIRS  LFW pairs per fold for evaluation (default 100 of 600; 0 = all): every protocol, btm-stm
#                included, is evaluated on the same subset
#   EVAL_BACKEND runtime for evaluation (default openvino: the checkpoint is exported to ONNX)
#   THREADS      torch/OpenVINO threads per process (default 1, so two comparisons can share two cores)
#   KEEP_FREED_HEAP=1  train with --keep-freed-heap (CPU: up to 3x faster multi-branch steps, but the heap
#                stays at the peak step's size: 16.7 GB for a four-branch Lai run; only for a run that has the
#                memory to itself)
#
# Common to every variant (one place, not in the paper recipes): MobileFaceNet 512-d with CosFace s=32 m=0.35,
# SGD lr 0.05 (2 % warm-up, /10 at 9/16 and 13/16 of the run, Knoche's schedule shape), batch 64, flip and
# colour jitter 0.2: the crres_default setting, the one that trains from scratch on this data in a few hundred
# CPU steps (the papers' ArcFace m=0.5 at lr 0.01 barely moves there). Lu & Ebrahimi compare backbones, so their
# runs use IResNet-18 / WaveResNet-18 instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPARISON=${1:?usage: compare.sh knoche|ling|lai|lu [OUT_ROOT] [VARIANT ...]}
OUT_ROOT=${2:-runs/compare}
shift $(( $# >= 2 ? 2 : 1 ))
ONLY=("$@")
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared}
SEEDS=${SEEDS:-"1 2"}
IDENTITIES=${IDENTITIES:-256}
EPOCHS=${EPOCHS:-1}
LIMIT_PAIRS=${LIMIT_PAIRS:-100}
EVAL_BACKEND=${EVAL_BACKEND:-openvino}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

COMMON=(--set model=mobilefacenet --set 'model_kwargs={"num_features": 512}'
        --set head=cosface --set 'head_kwargs={"s": 32.0, "m": 0.35}'
        --set optimizer='"sgd"' --set momentum=0.9 --set weight_decay=0.0005
        --set 'lr_milestones=[0.5625, 0.8125]' --set lr_gamma=0.1 --set warmup_fraction=0.02
        --set flip=true --set color_jitter=0.2 --set clip_grad_norm=5.0
        --lr 0.05 --batch-size 64 --epochs "$EPOCHS")
LU_BACKBONE=${LU_BACKBONE:-18}
EVAL_PROTOCOLS=hr,btm_stm,fixed
RESOLUTIONS=7,14,28,56

# variant | recipe | extra arguments (after COMMON, so they win)
case "$COMPARISON" in
knoche)  # Knoche et al. 2022, Table 3: BT-M >= baseline everywhere; ST-M1 best on low, worse on high.
    VARIANTS=("baseline|baseline|"
              "bt_m|bt_m|"
              "st_m1|st_m1|"
              "bt_r14|bt_r|"
              "st_r14|st_r|") ;;
ling)    # Ling et al. 2023, Table 4: MAug + LogExp best on low without HR loss; L1/L2 below LogExp.
    VARIANTS=("maug_logexp_p1|maug_logexp_p1|"
              "maug_logexp_p2|maug_logexp_p2|"
              "maug_l1|maug_logexp_p1|--set loss_kwargs={\"lam\":1.0,\"p\":1.0,\"distance\":\"lp\"}"
              "maug_l2|maug_logexp_p1|--set loss_kwargs={\"lam\":1.0,\"p\":2.0,\"distance\":\"lp\"}"
              "paug_logexp_p1|maug_logexp_p1|--set sampler=\"paug\"") ;;
lai)     # Lai & Lam 2021, Table I: siamese + CR triplet > siamese > random-range baseline at 8-20 px.
    EVAL_PROTOCOLS=hr,lai
    VARIANTS=("random_range|baseline|--set sampler=\"uniform\" --set sampler_kwargs={\"lo\":8}"
              "siamese|lai_siamese_triplet|--set loss_kwargs={\"lam\":0.0,\"margin\":1.0}"
              "siamese_triplet|lai_siamese_triplet|") ;;
lu)      # Lu & Ebrahimi 2023, Table I: WaveResNet + KD + wavelet loss best at 14/28 px. The teacher is our own
         # HR-only model of the same depth, trained first (seed 1) and shared by every student.
    RESOLUTIONS=14,28,56
    T="--teacher $OUT_ROOT/lu/teacher/seed1/final.pt"
    B=$LU_BACKBONE
    VARIANTS=("teacher|lu_teacher|--set model=\"iresnet$B\""
              "resnet_lr|wave_kd|--set model=\"iresnet$B\" --set loss_kwargs={\"lambda1\":0.0,\"lambda2\":0.0,\"temperature\":4.0} $T"
              "wave_lr|wave_kd|--set model=\"waveresnet$B\" --set loss_kwargs={\"lambda1\":0.0,\"lambda2\":0.0,\"temperature\":4.0} $T"
              "wave_kd|wave_kd|--set model=\"waveresnet$B\" --set loss_kwargs={\"lambda1\":1.0,\"lambda2\":0.0,\"temperature\":4.0} $T"
              "wave_kd_wl|wave_kd|--set model=\"waveresnet$B\" $T") ;;
*) echo "unknown comparison $COMPARISON (knoche|ling|lai|lu)" >&2; exit 2 ;;
esac

DATA=$(SHARED=$SHARED training/experiments/make_data.sh "$IDENTITIES")

for entry in "${VARIANTS[@]}"; do
    IFS='|' read -r name recipe extra <<<"$entry"
    if [ ${#ONLY[@]} -gt 0 ] && [[ ! " ${ONLY[*]} " == *" $name "* ]]; then continue; fi
    for seed in $SEEDS; do
        [ "$name" = teacher ] && [ "$seed" != 1 ] && continue   # one teacher serves every student
        run=$OUT_ROOT/$COMPARISON/$name/seed$seed
        if [ ! -f "$run/final.pt" ]; then
            echo "== train $COMPARISON/$name seed $seed -> $run"
            resume=(); [ -f "$run/last.pt" ] && resume=(--resume "$run/last.pt")
            heap=(); [ "${KEEP_FREED_HEAP:-0}" = 1 ] && heap=(--keep-freed-heap)
            # shellcheck disable=SC2086  # $extra holds several words on purpose
            $PY -m training.train --recipe "$recipe" --data "$DATA" --out "$run" --device "${DEVICE:-cpu}" \
                --seed "$seed" --workers 1 --no-progress "${COMMON[@]}" $extra ${MAX_STEPS:+--max-steps $MAX_STEPS} \
                "${resume[@]}" "${heap[@]}"
        fi
        if [ ! -f "$run/eval/results.json" ]; then
            echo "== evaluate $run"
            limit=(); [ "$LIMIT_PAIRS" -gt 0 ] && limit=(--limit-pairs "$LIMIT_PAIRS")
            $PY -m evaluation --model "$run/final.pt" --lfw "$SHARED/data/lfw" --protocols "$EVAL_PROTOCOLS" \
                --resolutions "$RESOLUTIONS" --modes cr --backend "$EVAL_BACKEND" --threads "$THREADS" \
                "${limit[@]}" --no-plots --quiet --out "$run/eval"
        fi
    done
done
$PY -m training.experiments.summarize "$OUT_ROOT/$COMPARISON"
