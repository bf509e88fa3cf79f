#!/usr/bin/env bash
# The training folder of issue 6: one identity folder per person from celeba + glint24 (celeba_<id>,
# glint_<name>), as symlinks into ../shared (nothing is copied), keeping the N identities with most crops.
#   training/experiments/make_data.sh [N=256] -> prints the folder (runs/data/celeba_glint24_top<N>; N=0: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
IDENTITIES=${1:-256}
DATA=runs/data/celeba_glint24_top${IDENTITIES}
if [ ! -d "$DATA" ]; then
    [ -d "$SHARED/data/train/celeba" ] || { echo "no $SHARED/data/train/celeba" >&2; exit 1; }
    mkdir -p "$DATA.tmp"
    for d in "$SHARED"/data/train/celeba/*/ "$SHARED"/data/train/glint24/*/; do
        prefix=$(basename "$(dirname "$d")"); [ "$prefix" = celeba ] || prefix=glint
        printf '%s\t%s\t%s\n' "$(find "$d" -maxdepth 1 -type f | wc -l)" "$(realpath "$d")" "${prefix}_$(basename "$d")"
    done | sort -k1,1nr -k3,3 | { if [ "$IDENTITIES" -gt 0 ]; then head -n "$IDENTITIES"; else cat; fi; } |
    while IFS=$'\t' read -r _ path name; do ln -sfn "$path" "$DATA.tmp/$name"; done
    mv "$DATA.tmp" "$DATA"   # only a complete folder gets the final name
fi
echo "$DATA"
