#!/usr/bin/env bash
# The z-context study on the phantoms (where a vessel's cross-section looks like a small lesion in one slice):
# the 2.5D baseline and VA, Mask R-CNN and semantic FPN, trained with the same schedule and seed (SEED 0 in the
# Phantom configs) and evaluated with the LiTS 3D metrics on phantom_val.
# Usage: tools/zcontext_study.sh [KEY VALUE ...]   (overrides for every run, e.g. SEED 1)
# Environment: VA_DATASETS (default ./datasets), STUDY_OUT (default ./output/study), STUDY_RUNS (config names).
# Finished runs are skipped (train_net --resume), so the study can be extended run by run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export VA_DATASETS=${VA_DATASETS:-$PWD/datasets}
OUT=${STUDY_OUT:-$PWD/output/study}
C=projects/VolumetricAttention/configs/Phantom
RUNS=${STUDY_RUNS:-"mask_rcnn_R_18_FPN_GN_baseline mask_rcnn_R_18_FPN_GN_va_bag3 semantic_R_18_FPN_GN_baseline semantic_R_18_FPN_GN_va_bag3"}

$PY tools/make_phantoms.py --num-cases 12 --config-file "$C/mask_rcnn_R_18_FPN_GN_va_bag3.yaml"
for name in $RUNS; do
    echo "== $name"
    $PY projects/VolumetricAttention/train_net.py --config-file "$C/$name.yaml" --resume OUTPUT_DIR "$OUT/$name" "$@"
done
for model in mask_rcnn semantic; do
    base="$OUT/${model}_R_18_FPN_GN_baseline/inference/phantom_val/lits_summary.json"
    va="$OUT/${model}_R_18_FPN_GN_va_bag3/inference/phantom_val/lits_summary.json"
    if [ -f "$base" ] && [ -f "$va" ]; then
        echo "== $model: baseline vs VA"
        $PY tools/plot_results.py "$base" "$va" --labels baseline VA --out "$OUT/plots_$model"
    fi
done
