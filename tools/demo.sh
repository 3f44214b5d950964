#!/usr/bin/env bash
# The main job on the built-in synthetic CT phantoms, end to end, on the CPU:
#   1. generate phantoms  2. prepare them  3. train the CPU-sized VA Mask R-CNN
#   4. evaluate 3D Dice on the held-out phantoms  5. predict one held-out volume to NIfTI
#   6. write overlays, metrics and plots  7. print where everything is
# Usage: tools/demo.sh [KEY VALUE ...]   (config overrides for training, e.g. SOLVER.MAX_ITER 100)
# Environment: VA_DATASETS (default ./datasets), DEMO_OUT (default ./output/demo), DEMO_CONFIG.
# Re-running resumes training from the last checkpoint and skips finished preparation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export VA_DATASETS=${VA_DATASETS:-$PWD/datasets}
OUT=${DEMO_OUT:-$PWD/output/demo}
CONFIG=${DEMO_CONFIG:-projects/VolumetricAttention/configs/Phantom/mask_rcnn_R_18_FPN_GN_va_bag3.yaml}
CASE=volume-3  # the first held-out phantom (every 4th case is phantom_val)

echo "== 1-2. phantoms -> $VA_DATASETS/phantom, cache -> $VA_DATASETS/cache/phantom"
$PY tools/make_phantoms.py --num-cases 12 --config-file "$CONFIG"

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
$PY tools/plot_results.py "$EVAL/lits_summary.json" --labels "VA Mask R-CNN" --out "$OUT/plots"

echo "== 7. results"
echo "metrics:     $EVAL/lits_summary.json, $EVAL/lits_per_case.csv, $EVAL/lits_lesions.csv"
echo "checkpoint:  $OUT/model_final.pth   (TensorBoard: tensorboard --logdir $OUT)"
echo "prediction:  $OUT/predictions/$CASE.nii.gz and ${CASE}_lesions.{json,csv}"
echo "overlays:    $OUT/overlays/${CASE}_montage.png"
echo "plots:       $OUT/plots/"
