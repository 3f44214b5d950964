#!/usr/bin/env bash
# The DeepLesion study: lesion detection scored by FROC on a synthetic DeepLesion (tools/make_phantoms.py --layout
# deeplesion: zcontext_liver phantoms, a box per lesion cross-section of a key slice, vessels of the lesions' size
# and HU without one), VA against 3DCE and early fusion. Does a detector find more lesions at a given number of FPs
# per image with VA than with the baselines that see the same slices?
# Rows (configs/DeepLesion/faster_rcnn_R_18_FPN_GN_*, one schedule, data and seed for all): the 2.5D baseline;
# early fusion (the 9 slices VA sees as 9 input channels); 3DCE late fusion (bag of 3); VA with the cosine slice
# similarity; VA + context features (the project's recommended from-scratch VA). Two more rows, not run by default
# (STUDY_RUNS): the baseline and VA + context features with deformable convs in res3-res5 (dconv_baseline,
# dconv_va_context_features).
# Each run trains on deeplesion_train + deeplesion_val, is scored on deeplesion_test (the FROC at the end of
# training) and on deeplesion_train (the collapse check: the lesions found on the run's own training key slices),
# and the table is printed (mean ± std over seeds): sensitivity at 0.5, 1, 2 and 4 FPs per image and their mean,
# AP50, the mean sensitivity per lesion size, the share of the FPs that lie on a vessel (TEST.CT.LOOKALIKES: the
# synthetic set's lookalikes.json), s/iteration; the rows' mean FROC curves go to $STUDY_OUT/froc.png.
# Usage: tools/deeplesion_study.sh [KEY VALUE ...]   (config overrides for every run)
# Environment: STUDY_DATASETS (default ./datasets/deeplesion_study), STUDY_CASES (series generated, default 60: about
#              20 test key slices), STUDY_OUT (default ./output/deeplesion_study), STUDY_SEEDS (default "0 1 2"),
#              STUDY_RUNS (default: every row), STUDY_THREADS (default 2).
# Runs one training at a time. A run whose model_final.pth and test evaluation exist is skipped; an interrupted run
# resumes from its last checkpoint (train_net --resume), so the study can be stopped and extended run by run.
# braces: bash reads the whole script before it runs, so the file can change while a study runs
{
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_study_runs.sh  # study_runs: the run loop and the tables
PY=.venv/bin/python
export VA_DATASETS=${STUDY_DATASETS:-$PWD/datasets/deeplesion_study}
export OMP_NUM_THREADS=${STUDY_THREADS:-2}
OUT=${STUDY_OUT:-$PWD/output/deeplesion_study}
SEEDS=${STUDY_SEEDS:-"0 1 2"}
C=projects/VolumetricAttention/configs/DeepLesion/faster_rcnn_R_18_FPN_GN
declare -A CONFIG=(
    [baseline]=${C}_baseline.yaml
    [early_fusion]=${C}_early_fusion.yaml
    [threedce]=${C}_3dce_bag3.yaml
    [va]=${C}_va_bag3.yaml
    [va_context_features]=${C}_va_context_bag3.yaml
    [dconv_baseline]=${C}_dconv_baseline.yaml
    [dconv_va_context_features]=${C}_dconv_va_context_bag3.yaml
)
declare -A LABEL=(
    [baseline]="baseline (2.5D, 3 slices)"
    [early_fusion]="early fusion (9 slices as channels)"
    [threedce]="3DCE late fusion (bag of 3)"
    [va]="VA, cosine similarity"
    [va_context_features]="VA, cosine + context features"
    [dconv_baseline]="deformable baseline"
    [dconv_va_context_features]="deformable VA, cosine + context features"
)
RUNS=${STUDY_RUNS:-"baseline early_fusion threedce va va_context_features"}
for name in $RUNS; do
    [ -n "${CONFIG[$name]:-}" ] || { echo "deeplesion_study.sh: unknown run $name in STUDY_RUNS (runs:" \
        "${!CONFIG[*]})" >&2; exit 2; }
done

if [ ! -f "$VA_DATASETS/cache/deeplesion/index.json" ]; then
    # every row's config has the same INPUT.CT settings, so one preparation serves them all
    $PY tools/make_phantoms.py --layout deeplesion --num-cases "${STUDY_CASES:-60}" --workers "$OMP_NUM_THREADS" \
        --config-file "${CONFIG[va]}"
fi
TABLE_ARGS=(--froc-plot "$OUT/froc.png")
study_runs deeplesion deeplesion_test deeplesion_train "training key slices" \
    TEST.CT.LOOKALIKES "$VA_DATASETS/DeepLesion/lookalikes.json" "$@"
exit
}
