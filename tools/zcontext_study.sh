#!/usr/bin/env bash
# The z-context studies (projects/VolumetricAttention/docs/): is VA better than the 2.5D baselines, and by how much?
# On the phantoms of a profile (STUDY_PROFILE):
#   zcontext_liver: 128 px crops around the liver at 0.65-0.75 mm; vessels and lesions of 9-14 mm with the same
#                   intensity, plus 1-2 large lesions per case (docs/zcontext_study.md);
#   zcontext_small: lesions of 15 mm or less only (at most 1% of the liver), among curved vessels of their size
#                   (docs/small_lesion_study.md);
# train every row below with the same schedule for each seed, evaluate it with the LiTS 3D metrics on phantom_val
# (5 held-out cases) and on phantom_train (the collapse check: lesions found on the run's own training cases), and
# print the table (mean ± std over seeds).
# Rows: the 2.5D baseline; early fusion (the 9 slices VA sees as 9 input channels), also trained for the wall-clock
# time of VA + context features (early_fusion_equal_time: 3500 iterations, measured by tools/benchmark.py --only
# study_rows; OPTS below says how); VA with the cosine slice similarity;
# VA + context features (the project's recommended from-scratch VA); 3DCE late fusion (threedce). Further rows of
# the zcontext_liver study: baseline_ce (cross-entropy only), va_dot (the paper's dot product), va_no_context_grad,
# va_shared (4 targets per batch share their bags), va_no_gate_relu; and va_context_members3 (VA + context
# features whose bag members are 3 early-fused 2.5D images each: context at the input too) with its control
# early_fusion_15 (early fusion over the same 15 slices); va_context_bag5 (VA + context features with a bag of 5,
# the same 15 slices as 5 members of one image).
# Usage: tools/zcontext_study.sh [KEY VALUE ...]   (config overrides for every run)
# Environment: STUDY_PROFILE (default zcontext_liver), STUDY_DATASETS (default ./datasets/$STUDY_PROFILE),
#              STUDY_OUT (default ./output/$STUDY_PROFILE), STUDY_SEEDS (default "0 1 2"),
#              STUDY_RUNS (default: the main rows), STUDY_THREADS (default 2).
# Runs one training at a time. A run whose model_final.pth and evaluations exist is skipped; an interrupted run
# resumes from its last checkpoint (train_net --resume), so the study can be stopped and extended run by run.
# braces: bash reads the whole script before it runs, so the file can change while a study runs
{
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_study_runs.sh  # study_runs: the run loop and the tables
PY=.venv/bin/python
PROFILE=${STUDY_PROFILE:-zcontext_liver}
export VA_DATASETS=${STUDY_DATASETS:-$PWD/datasets/$PROFILE}
export OMP_NUM_THREADS=${STUDY_THREADS:-2}
OUT=${STUDY_OUT:-$PWD/output/$PROFILE}
SEEDS=${STUDY_SEEDS:-"0 1 2"}
# both profiles train the same models: the zcontext_liver configs
C=projects/VolumetricAttention/configs/Phantom/zcontext_liver_semantic_R_18_FPN_GN
VA_CONFIG=${C}_va_bag3.yaml
case $PROFILE in
    zcontext_liver|zcontext_small) ;;
    *) echo "zcontext_study.sh: STUDY_PROFILE must be zcontext_liver or zcontext_small, got $PROFILE" >&2; exit 2 ;;
esac
declare -A CONFIG=(
    [baseline]=${C}_baseline.yaml
    [baseline_ce]=${C}_baseline.yaml
    [early_fusion]=${C}_early_fusion.yaml
    [early_fusion_equal_time]=${C}_early_fusion.yaml
    [early_fusion_15]=${C}_early_fusion.yaml
    [va_context_features]=${C}_va_context_bag3.yaml
    [va_context_members3]=${C}_va_context_bag3.yaml
    [va_context_bag5]=${C}_va_context_bag3.yaml
    [threedce]=${C}_3dce_bag3.yaml
)
# every other row is the VA config with its overrides
DEFAULT_CONFIG=$VA_CONFIG
declare -A OPTS=(
    [baseline_ce]="MODEL.SEM_SEG_HEAD.NAME SemSegFPNHead"
    [va_dot]="MODEL.VA.SIMILARITY dot"
    [va_no_context_grad]="MODEL.VA.CONTEXT_GRAD False"
    [va_shared]="DATALOADER.SHARED_BAG_TARGETS 4"
    [va_no_gate_relu]="MODEL.VA.GATE_RELU False"
    [early_fusion_15]="MODEL.VA.BAG_SIZE 5"
    [va_context_bag5]="MODEL.VA.BAG_SIZE 5"
    # early fusion for VA + context features' wall-clock time of 2000 iterations: `tools/benchmark.py --threads 1
    # --only study_rows --train-iters 40` measured, side by side on one CPU core (batch 4, 128 px, loading
    # included), VA + context features at 1.76x early fusion's seconds per iteration, so 3500 iterations, the LR
    # steps at the same fractions (0.8, 0.95); on another device, measure the ratio there with the same command
    [early_fusion_equal_time]="SOLVER.MAX_ITER 3500 SOLVER.STEPS (2800,3325)"
    # members of 3 early-fused 2.5D images: the target member sees early fusion's 9 slices, VA adds the members
    # 3 slices above and below (15 slices in all)
    [va_context_members3]="MODEL.VA.MEMBER_IMAGES 3"
)
declare -A LABEL=(
    [baseline]="baseline (2.5D, 3 slices)"
    [baseline_ce]="baseline, cross-entropy only"
    [early_fusion]="early fusion (9 slices as channels)"
    [early_fusion_equal_time]="early fusion, VA + context's training time"
    [early_fusion_15]="early fusion, 15 slices"
    [va]="VA, cosine similarity"
    [va_dot]="VA, dot product (paper)"
    [va_no_context_grad]="VA, cosine, no context gradients"
    [va_shared]="VA, cosine, shared bags"
    [va_context_features]="VA, cosine + context features"
    [va_context_members3]="VA + context features, members of 3 images"
    [va_context_bag5]="VA + context features, bag of 5"
    [va_no_gate_relu]="VA, cosine, no ReLU before the gates"
    [threedce]="3DCE late fusion (bag of 3)"
)
RUNS=${STUDY_RUNS:-"baseline early_fusion va va_context_features threedce early_fusion_equal_time"}

# a row's own overrides of its config (the VA config's variants, the bags of 5), before those for every run
run_opts() {
    echo "${OPTS[$1]:-}"
}

if [ ! -f "$VA_DATASETS/cache/phantom/index.json" ]; then
    $PY tools/make_phantoms.py --num-cases 20 --profile "$PROFILE" --config-file "$VA_CONFIG"
fi
study_runs lits phantom_val phantom_train "training cases" "$@"
exit
}
