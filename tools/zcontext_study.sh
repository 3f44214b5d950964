#!/usr/bin/env bash
# The z-context study (projects/VolumetricAttention/README.md): is VA better than the 2.5D baselines, and by how much?
# On the "zcontext_liver" phantoms (128 px crops around the liver at native 0.65-0.75 mm; vessels and small lesions
# 9-14 mm wide with the same intensity, told apart only by their length along z), train every row below with the
# same schedule, for each seed, evaluate it with the LiTS 3D metrics on phantom_val (5 held-out cases), and print
# the table (mean ± std over seeds).
# Rows: the 2.5D baseline (Dice + cross-entropy loss, as every row; and with cross-entropy only); the early-fusion baseline (the 9 slices VA sees, as 9 input channels); VA with the
# cosine slice similarity (the project's default) and with the paper's dot product; VA without context gradients;
# VA with shared bags (4 consecutive targets per batch); VA with context features (beyond the paper; the project's
# recommended from-scratch VA, its own config); VA without the ReLU before the gates (MODEL.VA.GATE_RELU False).
# Usage: tools/zcontext_study.sh [KEY VALUE ...]   (config overrides for every run)
# Environment: STUDY_DATASETS (default ./datasets/zcontext_liver), STUDY_OUT (default ./output/zcontext_liver),
#              STUDY_SEEDS (default "0 1 2"), STUDY_RUNS (default: every row), STUDY_THREADS (default 2).
# Runs one training at a time. A run whose model_final.pth and evaluation exist is skipped; an interrupted run
# resumes from its last checkpoint (train_net --resume), so the study can be stopped and extended run by run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export VA_DATASETS=${STUDY_DATASETS:-$PWD/datasets/zcontext_liver}
export OMP_NUM_THREADS=${STUDY_THREADS:-2}
OUT=${STUDY_OUT:-$PWD/output/zcontext_liver}
SEEDS=${STUDY_SEEDS:-"0 1 2"}
C=projects/VolumetricAttention/configs/Phantom
VA_CONFIG=$C/zcontext_liver_semantic_R_18_FPN_GN_va_bag3.yaml
declare -A CONFIG=(
    [baseline]=$C/zcontext_liver_semantic_R_18_FPN_GN_baseline.yaml
    [baseline_ce]=$C/zcontext_liver_semantic_R_18_FPN_GN_baseline.yaml
    [early_fusion]=$C/zcontext_liver_semantic_R_18_FPN_GN_early_fusion.yaml
    [va_context_features]=$C/zcontext_liver_semantic_R_18_FPN_GN_va_context_bag3.yaml
)
# every other row is the VA config with its overrides
declare -A OPTS=(
    [baseline_ce]="MODEL.SEM_SEG_HEAD.NAME SemSegFPNHead"
    [va_dot]="MODEL.VA.SIMILARITY dot"
    [va_no_context_grad]="MODEL.VA.CONTEXT_GRAD False"
    [va_shared]="DATALOADER.SHARED_BAG_TARGETS 4"
    [va_no_gate_relu]="MODEL.VA.GATE_RELU False"
)
declare -A LABEL=(
    [baseline]="baseline (2.5D, 3 slices)"
    [baseline_ce]="baseline, cross-entropy only"
    [early_fusion]="early fusion (9 slices as channels)"
    [va]="VA, cosine similarity"
    [va_dot]="VA, dot product (paper)"
    [va_no_context_grad]="VA, cosine, no context gradients"
    [va_shared]="VA, cosine, shared bags"
    [va_context_features]="VA, cosine + context features"
    [va_no_gate_relu]="VA, cosine, no ReLU before the gates"
)
RUNS=${STUDY_RUNS:-"baseline baseline_ce early_fusion va va_dot va_no_context_grad va_shared va_context_features va_no_gate_relu"}

if [ ! -f "$VA_DATASETS/cache/phantom/index.json" ]; then
    $PY tools/make_phantoms.py --num-cases 20 --profile zcontext_liver --config-file "$VA_CONFIG"
fi
for seed in $SEEDS; do
    for name in $RUNS; do
        dir="$OUT/${name}_s$seed"
        if [ -f "$dir/model_final.pth" ] && [ -f "$dir/inference/phantom_val/lits_summary.json" ]; then
            echo "== $name, SEED $seed: done"
            continue
        fi
        echo "== $name, SEED $seed"
        # shellcheck disable=SC2086
        $PY projects/VolumetricAttention/train_net.py --config-file "${CONFIG[$name]:-$VA_CONFIG}" --resume \
            OUTPUT_DIR "$dir" SEED "$seed" ${OPTS[$name]:-} "$@"
    done
done
specs=()
for name in $RUNS; do
    dirs=""
    for seed in $SEEDS; do dirs="${dirs:+$dirs,}$OUT/${name}_s$seed"; done
    specs+=("${LABEL[$name]}=$dirs")
done
$PY tools/study_table.py "${specs[@]}" --json "$OUT/study.json"
