#!/usr/bin/env bash
# The z-context study (projects/VolumetricAttention/README.md): on the "zcontext" phantoms, where vessels and small
# lesions have the same width and intensity and only their length along z tells them apart, train the 2.5D
# semantic FPN baseline and VA (bag 3) with the same schedule, for each seed, evaluate them with the LiTS 3D metrics
# on phantom_val, and print the table (mean ± std over seeds). Beside them: VA with the paper's unscaled slice
# softmax and gates started at 0.95 (the project's defaults), and VA trained with shared bags (4 consecutive
# targets per batch, DATALOADER.SHARED_BAG_TARGETS).
# Usage: tools/zcontext_study.sh [KEY VALUE ...]   (config overrides for every run)
# Environment: STUDY_DATASETS (default ./datasets/zcontext), STUDY_OUT (default ./output/zcontext),
#              STUDY_SEEDS (default "0 1"), STUDY_RUNS (default: the first four runs below; the ablations
#              va_channel_only and va_bag5 on request).
# Finished runs are skipped (train_net --resume), so the study can be extended run by run or seed by seed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export VA_DATASETS=${STUDY_DATASETS:-$PWD/datasets/zcontext}
OUT=${STUDY_OUT:-$PWD/output/zcontext}
SEEDS=${STUDY_SEEDS:-"0 1"}
C=projects/VolumetricAttention/configs/Phantom
# every run but the baseline is the VA config with its overrides
VA_CONFIG=$C/zcontext_semantic_R_18_FPN_GN_va_bag3.yaml
BASELINE_CONFIG=$C/zcontext_semantic_R_18_FPN_GN_baseline.yaml
declare -A OPTS=(
    [baseline]=""
    [va]=""
    [va_unscaled]="MODEL.VA.SIMILARITY dot MODEL.VA.GATE_BIAS_INIT 3.0"
    [va_shared]="DATALOADER.SHARED_BAG_TARGETS 4"
    [va_channel_only]="MODEL.VA.SPATIAL False"
    [va_bag5]="MODEL.VA.BAG_SIZE 5"
)
RUNS=${STUDY_RUNS:-"baseline va va_unscaled va_shared"}

if [ ! -f "$VA_DATASETS/cache/phantom/index.json" ]; then
    $PY tools/make_phantoms.py --num-cases 20 --profile zcontext --config-file "$VA_CONFIG"
fi
for seed in $SEEDS; do
    for name in $RUNS; do
        echo "== $name, SEED $seed"
        config=$VA_CONFIG
        [ "$name" = baseline ] && config=$BASELINE_CONFIG
        # shellcheck disable=SC2086
        $PY projects/VolumetricAttention/train_net.py --config-file "$config" --resume \
            OUTPUT_DIR "$OUT/${name}_s$seed" SEED "$seed" ${OPTS[$name]} "$@"
    done
done
specs=()
for name in $RUNS; do
    dirs=""
    for seed in $SEEDS; do dirs="${dirs:+$dirs,}$OUT/${name}_s$seed"; done
    specs+=("$name=$dirs")
done
$PY tools/study_table.py "${specs[@]}" --json "$OUT/study.json"
