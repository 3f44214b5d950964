#!/usr/bin/env bash
# The main job on the built-in synthetic CT phantoms, end to end, on the CPU:
#   1. generate phantoms  2. prepare them  3. train the CPU-sized VA Mask R-CNN
#   4. evaluate 3D Dice on the held-out phantoms  5. predict one held-out volume to NIfTI
#   6. write overlays, metrics and plots  7. print where everything is
# Usage: tools/demo.sh [KEY VALUE ...]   (config overrides for training, e.g. SOLVER.MAX_ITER 100)
# Environment: VA_DATASETS (default ./datasets), DEMO_OUT (default ./output/demo), DEMO_CONFIG.
# Re-running resumes training from the last checkpoint and skips finished preparation.
#
# tools/demo.sh --zcontext [KEY VALUE ...]: what VA is for, lesions among look-alike vessels. The same steps on the
# z-context study's 20 phantoms (profile zcontext_liver: vessels of the lesions' width and intensity, which only their
# length along z tells apart; docs/zcontext_study.md), training the study's VA + context features
# (Phantom/zcontext_liver_semantic_R_18_FPN_GN_va_context_bag3.yaml, 2000 iterations, SEED 0), evaluated on the 5
# held-out phantoms. Environment: DEMO_ZCONTEXT_DATASETS (its own VA_DATASETS, default ./datasets/zcontext_liver,
# which the study shares), DEMO_OUT (default ./output/demo_zcontext), DEMO_CONFIG.
#
# tools/demo.sh --deeplesion [KEY VALUE ...]: lesion detection on a synthetic DeepLesion instead, on 2 CPU cores in
# the time the project README gives: 1. generate 30 series (DL_info.csv + 16-bit PNGs) and prepare them  2. train
# the detector the DeepLesion study recommends (early fusion, DeepLesion/faster_rcnn_R_18_FPN_GN_early_fusion.yaml,
# its 500 iterations; DEMO_CONFIG=.../faster_rcnn_R_18_FPN_GN_va_context_bag3.yaml for the VA detector)  3. score the
# FROC on the test key slices  4. plot the FROC and draw the predicted and ground-truth boxes on key slices
# 5. print where everything is. Environment: DEMO_DEEPLESION_DATASETS (its own VA_DATASETS,
# default ./datasets/synthetic_deeplesion), DEMO_OUT (default ./output/demo_deeplesion), DEMO_CONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

deeplesion_demo() {
    export VA_DATASETS=${DEMO_DEEPLESION_DATASETS:-$PWD/datasets/synthetic_deeplesion}
    local out=${DEMO_OUT:-$PWD/output/demo_deeplesion}
    local configs=projects/VolumetricAttention/configs/DeepLesion
    local config=${DEMO_CONFIG:-$configs/faster_rcnn_R_18_FPN_GN_early_fusion.yaml}
    local eval="$out/inference/deeplesion_test"

    echo "== 1. synthetic DeepLesion -> $VA_DATASETS/DeepLesion, cache -> $VA_DATASETS/cache/deeplesion"
    if [ ! -f "$VA_DATASETS/cache/deeplesion/index.json" ]; then
        $PY tools/make_phantoms.py --layout deeplesion --num-cases 30 --workers 2 --config-file "$config"
    fi

    echo "== 2-3. training $config -> $out (FROC on deeplesion_test every TEST.EVAL_PERIOD and at the end)"
    $PY projects/VolumetricAttention/train_net.py --config-file "$config" --resume OUTPUT_DIR "$out" "$@"

    echo "== 4. FROC plot and boxes on key slices"
    $PY tools/plot_results.py "$eval/deeplesion_summary.json" --labels "$(basename "$config" .yaml)" --out "$out/plots"
    $PY tools/visualize_detections.py --config-file "$config" --weights "$out/model_final.pth" \
        --output "$out/overlays" --count 6 "$@" > /dev/null

    echo "== 5. results (${SECONDS} s)"
    echo "metrics:     $eval/deeplesion_summary.json, $eval/deeplesion_froc.csv"
    echo "checkpoint:  $out/model_final.pth   (TensorBoard: tensorboard --logdir $out)"
    echo "FROC plot:   $out/plots/froc.png"
    echo "overlays:    $out/overlays/montage.png and one PNG per key slice (ground truth green, predictions red)"
}

if [ "${1:-}" = "--deeplesion" ]; then
    shift
    deeplesion_demo "$@"
    exit 0
fi

PHANTOMS=projects/VolumetricAttention/configs/Phantom
if [ "${1:-}" = "--zcontext" ]; then
    shift
    export VA_DATASETS=${DEMO_ZCONTEXT_DATASETS:-$PWD/datasets/zcontext_liver}
    OUT=${DEMO_OUT:-$PWD/output/demo_zcontext}
    CONFIG=${DEMO_CONFIG:-$PHANTOMS/zcontext_liver_semantic_R_18_FPN_GN_va_context_bag3.yaml}
    PHANTOM_ARGS=(--num-cases 20 --profile zcontext_liver)
    COMPARE="the 2.5D baseline, early fusion and 3DCE on these phantoms: tools/zcontext_study.sh, \
projects/VolumetricAttention/docs/zcontext_study.md"
else
    export VA_DATASETS=${VA_DATASETS:-$PWD/datasets}
    OUT=${DEMO_OUT:-$PWD/output/demo}
    CONFIG=${DEMO_CONFIG:-$PHANTOMS/mask_rcnn_R_18_FPN_GN_va_bag3.yaml}
    PHANTOM_ARGS=(--num-cases 12)
    COMPARE=""
fi
CASE=volume-3  # the first held-out phantom (every 4th case is phantom_val)

echo "== 1-2. phantoms -> $VA_DATASETS/phantom, cache -> $VA_DATASETS/cache/phantom"
if [ ! -f "$VA_DATASETS/cache/phantom/index.json" ]; then
    $PY tools/make_phantoms.py "${PHANTOM_ARGS[@]}" --config-file "$CONFIG"
fi

echo "== 3-4. training $CONFIG -> $OUT (evaluation on phantom_val at the end)"
$PY projects/VolumetricAttention/train_net.py --config-file "$CONFIG" --resume OUTPUT_DIR "$OUT" "$@"

echo "== 5. predicting $CASE"
$PY tools/predict.py --config-file "$CONFIG" --weights "$OUT/model_final.pth" \
    --input "$VA_DATASETS/phantom/$CASE.nii.gz" --output "$OUT/predictions" --opts "$@"

echo "== 6. overlays and plots"
$PY tools/visualize.py --volume "$VA_DATASETS/phantom/$CASE.nii.gz" \
    --prediction "$OUT/predictions/$CASE.nii.gz" --ground-truth "$VA_DATASETS/phantom/segmentation-${CASE#volume-}.nii.gz" \
    --output "$OUT/overlays" > /dev/null
EVAL="$OUT/inference/phantom_val"
$PY tools/plot_results.py "$EVAL/lits_summary.json" --labels "$(basename "$CONFIG" .yaml)" --out "$OUT/plots"

echo "== 7. results"
echo "metrics:     $EVAL/lits_summary.json, $EVAL/lits_per_case.csv, $EVAL/lits_lesions.csv"
echo "checkpoint:  $OUT/model_final.pth   (TensorBoard: tensorboard --logdir $OUT)"
echo "prediction:  $OUT/predictions/$CASE.nii.gz and ${CASE}_lesions.{json,csv}"
echo "overlays:    $OUT/overlays/${CASE}_montage.png"
echo "plots:       $OUT/plots/"
[ -z "$COMPARE" ] || echo "compare:     $COMPARE"
