#!/usr/bin/env bash
# The pretrained study (projects/VolumetricAttention/docs/pretrained_study.md): the paper's own regime, a pretrained
# 2D model fine-tuned on little 3D data. Does VA beat early fusion and 3DCE when every model starts from the same
# 2.5D checkpoint, each the way its authors started it, and how does that change with the number of training cases?
# Pretraining, the "+ DeepLesion" step of the paper's Table 2b: the study's 2.5D semantic FPN baseline (ResNet-18 +
# GN, its 2000 iterations, seed 0) on the 15 training phantoms of the zcontext_liver profile (lesions of every size)
# made with --seed 1, in datasets/zcontext_liver_pretrain (made when missing, like the model in $STUDY_PRETRAIN).
# The fine-tuning set is the zcontext_small profile (lesions of 15 mm or less) made with --seed 0: phantom k of
# a seed has the anatomy of phantom k of any profile with that seed, so the other seed keeps every fine-tuning case
# out of the pretraining. Every run is evaluated on the 5 held-out phantoms (phantom_val) and, the collapse check,
# on its own training cases.
# Columns, one schedule (1000 iterations, LR steps at 800 and 950) and $STUDY_SEEDS each:
#   scratch_k3     from scratch on the first 3 training cases (DATASETS.TRAIN_FIRST_CASES 3);
#   pretrained_k3  from the pretrained checkpoint (MODEL.WEIGHTS) on the first 3 training cases;
#   pretrained_k15 from the pretrained checkpoint on all 15.
# Rows (the zcontext_liver configs, whose model and data settings the small-lesion study shares): baseline;
# early_fusion (MODEL.EARLY_FUSION.STEM_INIT "centre", 3DCE's); early_fusion_inflate ("inflate", I3D's); threedce
# (its fusion starts as the identity); va_paper (VA as the LiTS configs fine-tune it: gates starting at
# sigmoid(3)); va_context_features (VA + context features); va_context_uniform (slice weights fixed at 1/N);
# va_context_no_grad (MODEL.VA.CONTEXT_GRAD False). Pretrained VA rows start their gates at sigmoid(3), as the
# LiTS configs do; from scratch, at 0.5, as the small-lesion study did.
# The record also holds the starting point's values: the pretraining on its own held-out phantoms (keyed by its
# folder, output/zcontext_liver_pretrain) and the pretrained baseline not fine-tuned (zero_shot/baseline_s0).
# After each run its values are merged into docs/pretrained_study_runs.json (keyed <column>/<run>_s<seed>);
# tools/learning_curve.py prints the study's table and draws its plot from that file.
# Usage: tools/pretrained_study.sh [KEY VALUE ...]   (config overrides for every run)
# Environment: STUDY_COLUMNS (default "scratch_k3 pretrained_k3 pretrained_k15"), STUDY_SEEDS (default "0 1 2"),
#              STUDY_RUNS (default: each column's rows), STUDY_OUT (default ./output/pretrained_study),
#              STUDY_PRETRAIN (default ./output/zcontext_liver_pretrain), STUDY_THREADS (default 2),
#              STUDY_RECORD (default projects/VolumetricAttention/docs/pretrained_study_runs.json),
#              STUDY_FINETUNE (default zcontext_small: the fine-tuning profile, its seed-0 phantoms in datasets/<it>;
#              zcontext_liver checks the ranking on lesions of every size: give it its own STUDY_OUT and RECORD).
# Two instances can share the cores (STUDY_THREADS=1 each) on disjoint columns or seeds, once the pretraining
# exists. Finished runs are skipped and interrupted ones resume, as in the other studies.
# braces: bash reads the whole script before it runs, so the file can change while a study runs
{
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_study_runs.sh  # study_runs: the run loop and the tables
PY=.venv/bin/python
export OMP_NUM_THREADS=${STUDY_THREADS:-2}
ROOT=${STUDY_OUT:-$PWD/output/pretrained_study}
PRETRAIN=${STUDY_PRETRAIN:-$PWD/output/zcontext_liver_pretrain}
RECORD=${STUDY_RECORD:-projects/VolumetricAttention/docs/pretrained_study_runs.json}
COLUMNS=${STUDY_COLUMNS:-"scratch_k3 pretrained_k3 pretrained_k15"}
FINETUNE=${STUDY_FINETUNE:-zcontext_small}
ALL_SEEDS=${STUDY_SEEDS:-"0 1 2"}
C=projects/VolumetricAttention/configs/Phantom/zcontext_liver_semantic_R_18_FPN_GN
SCHEDULE=(SOLVER.MAX_ITER 1000 SOLVER.STEPS "(800, 950)" SOLVER.CHECKPOINT_PERIOD 500)
declare -A CONFIG=(
    [baseline]=${C}_baseline.yaml
    [early_fusion]=${C}_early_fusion.yaml
    [early_fusion_inflate]=${C}_early_fusion.yaml
    [threedce]=${C}_3dce_bag3.yaml
    [va_paper]=${C}_va_bag3.yaml
    [va_context_features]=${C}_va_context_bag3.yaml
    [va_context_uniform]=${C}_va_context_bag3.yaml
    [va_context_no_grad]=${C}_va_context_bag3.yaml
)
declare -A OPTS=(
    [early_fusion_inflate]="MODEL.EARLY_FUSION.STEM_INIT inflate"
    [va_context_uniform]="MODEL.VA.SLICE_WEIGHTS uniform"
    [va_context_no_grad]="MODEL.VA.CONTEXT_GRAD False"
)
declare -A LABEL=(
    [baseline]="baseline (2.5D)"
    [early_fusion]="early fusion, centre"
    [early_fusion_inflate]="early fusion, inflate"
    [threedce]="3DCE"
    [va_paper]="VA as the paper fine-tunes it"
    [va_context_features]="VA + context features"
    [va_context_uniform]="VA + context features, uniform slice weights"
    [va_context_no_grad]="VA + context features, CONTEXT_GRAD False"
)
declare -A COLUMN_RUNS=(
    [scratch_k3]="baseline early_fusion threedce va_context_features"
    [pretrained_k3]="baseline early_fusion early_fusion_inflate threedce va_paper va_context_features"
    [pretrained_k15]="baseline early_fusion threedce va_context_features va_context_uniform va_context_no_grad"
)
declare -A COLUMN_OPTS=(
    [scratch_k3]="DATASETS.TRAIN_FIRST_CASES 3"
    [pretrained_k3]="DATASETS.TRAIN_FIRST_CASES 3 MODEL.WEIGHTS $PRETRAIN/model_final.pth"
    [pretrained_k15]="DATASETS.TRAIN_FIRST_CASES 15 MODEL.WEIGHTS $PRETRAIN/model_final.pth"
)
COLUMN=""

# a row's own overrides: its variant, and the gate start of the pretrained VA rows
run_opts() {
    local opts=${OPTS[$1]:-}
    if [[ $COLUMN == pretrained_* && $1 == va_* ]]; then
        opts="$opts MODEL.VA.GATE_BIAS_INIT 3.0"
    fi
    echo "$opts"
}

# after each run: its values (held-out and training cases) into the record
after_run() {
    local name=$1 dir=$2 dataset
    for dataset in phantom_val phantom_train; do
        $PY tools/study_table.py "${LABEL[$name]}=$dir" --dataset "$dataset" --record "$RECORD" > /dev/null
    done
}

make_phantoms() {  # FOLDER PROFILE SEED: 20 phantoms of PROFILE in datasets/FOLDER, when missing
    if [ ! -f "datasets/$1/cache/phantom/index.json" ]; then
        VA_DATASETS=$PWD/datasets/$1 $PY tools/make_phantoms.py --num-cases 20 --profile "$2" --seed "$3" \
            --config-file "${C}_va_bag3.yaml"
    fi
}

make_phantoms "$FINETUNE" "$FINETUNE" 0
if [[ $COLUMNS == *pretrained* ]] && [ ! -f "$PRETRAIN/model_final.pth" ]; then
    make_phantoms zcontext_liver_pretrain zcontext_liver 1
    echo "== pretraining: the 2.5D baseline on the zcontext_liver phantoms of seed 1, in $PRETRAIN"
    VA_DATASETS=$PWD/datasets/zcontext_liver_pretrain $PY projects/VolumetricAttention/train_net.py \
        --config-file "${C}_baseline.yaml" --resume OUTPUT_DIR "$PRETRAIN" SEED 0
fi
export VA_DATASETS=$PWD/datasets/$FINETUNE
if [[ $COLUMNS == *pretrained* ]]; then
    # the starting point's own values: the pretraining on its held-out phantoms (of seed 1), and the pretrained
    # baseline not fine-tuned on the fine-tuning set's held-out phantoms
    ZERO_SHOT=$ROOT/zero_shot/baseline_s0
    if [ ! -f "$ZERO_SHOT/inference/phantom_val/lits_summary.json" ]; then
        echo "== the pretrained baseline, not fine-tuned, on the held-out phantoms"
        $PY projects/VolumetricAttention/train_net.py --config-file "${C}_baseline.yaml" --eval-only \
            OUTPUT_DIR "$ZERO_SHOT" MODEL.WEIGHTS "$PRETRAIN/model_final.pth"
    fi
    $PY tools/study_table.py "pretraining (zcontext_liver, seed-1 phantoms)=$PRETRAIN" --dataset phantom_val \
        --record "$RECORD" > /dev/null
    $PY tools/study_table.py "pretrained 2.5D baseline, not fine-tuned=$ZERO_SHOT" --dataset phantom_val \
        --record "$RECORD" > /dev/null
fi
for seed in $ALL_SEEDS; do
    for COLUMN in $COLUMNS; do
        [ -n "${COLUMN_RUNS[$COLUMN]:-}" ] || { echo "pretrained_study.sh: unknown column $COLUMN" >&2; exit 2; }
        runs=""
        for name in ${COLUMN_RUNS[$COLUMN]}; do
            [[ " ${STUDY_RUNS:-$name} " == *" $name "* ]] && runs="$runs $name"
        done
        [ -n "$runs" ] || continue
        # shellcheck disable=SC2086
        SEEDS=$seed OUT=$ROOT/$COLUMN RUNS=$runs \
            study_runs lits phantom_val phantom_train "training cases" "${SCHEDULE[@]}" ${COLUMN_OPTS[$COLUMN]} "$@"
    done
done
$PY tools/learning_curve.py "$RECORD"
exit
}
