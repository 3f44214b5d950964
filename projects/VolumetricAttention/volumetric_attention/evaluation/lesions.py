"""Matching predicted to ground-truth 3D lesions of one case, for the LiTS lesion metrics.

Lesions, their sizes and size buckets are defined in :mod:`volumetric_attention.inference.lesion_components`
(shared with the volume predictor's lesion list); its names are importable from here too.

Matching (:func:`match_lesions`), per case, between ground-truth (GT) components g and predicted components p:

* p overlaps g when they share at least one voxel.
* Per-lesion Dice of g: Dice between g and the union U_g of all predicted components that overlap g,
  ``2 |g ∩ U_g| / (|g| + |U_g|)``. Whole predicted components count, so a prediction that spills beyond g, or merges
  g with a neighbour, is penalised. A missed lesion (U_g empty) scores 0.
* g is a true positive (TP) when at least one predicted component overlaps it, else a false negative (FN).
* p is a false positive (FP) when it overlaps no GT lesion.
"""
import numpy as np

from ..inference import lesion_components

# re-exported: the evaluation's lesion definitions are the inference's (__all__ below)
from ..inference.lesion_components import (  # noqa: F401
    SIZE_BUCKETS,
    Lesion,
    equivalent_diameter_mm,
    find_lesions,
    label_components,
    longest_axial_diameter_mm,
    size_bucket,
)
from .metrics import dice_from_counts

__all__ = lesion_components.__all__ + ["match_lesions", "crop_to_foreground"]


def crop_to_foreground(*masks_zyx):
    """Crop same-shaped (Z, Y, X) arrays to the bounding box of the union of their nonzero voxels.

    Returns the cropped arrays (views), or ``None`` when all are empty.
    """
    sl = []
    for other in ((1, 2), (0, 2), (0, 1)):
        # Projections onto each axis: one pass per axis and mask, no full-size temporaries.
        nz = np.flatnonzero(np.logical_or.reduce([np.any(m, axis=other) for m in masks_zyx]))
        if nz.size == 0:
            return None
        sl.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(m[tuple(sl)] for m in masks_zyx)


def match_lesions(gt_mask_zyx, pred_mask_zyx, spacing_zyx, connectivity=26):
    """Match predicted to GT lesions of one case (definitions in the module docstring).

    Vectorised over lesions: one labelling per mask, then ``np.bincount``/``np.unique`` over the overlapping voxels.

    Args:
        gt_mask_zyx, pred_mask_zyx: bool arrays (Z, Y, X) on the same grid.
        spacing_zyx: (z, y, x) spacing in mm of that grid.
    Returns:
        dict of numpy arrays: per GT lesion [G]: ``gt_n_voxels``, ``gt_diameter_mm``, ``gt_size`` (str),
        ``gt_dice``, ``gt_detected`` (bool); per predicted lesion [P]: ``pred_n_voxels``, ``pred_diameter_mm``,
        ``pred_is_fp`` (bool).
    """
    gt_mask_zyx = np.asarray(gt_mask_zyx, dtype=bool)
    pred_mask_zyx = np.asarray(pred_mask_zyx, dtype=bool)
    if gt_mask_zyx.shape != pred_mask_zyx.shape:
        raise ValueError(f"masks differ in shape: {gt_mask_zyx.shape} vs {pred_mask_zyx.shape}")
    cropped = crop_to_foreground(gt_mask_zyx, pred_mask_zyx)
    if cropped is None:
        gt_labels = pred_labels = np.zeros((1, 1, 1), dtype=np.int32)
        n_gt = n_pred = 0
    else:
        gt_labels, n_gt = label_components(cropped[0], connectivity)
        pred_labels, n_pred = label_components(cropped[1], connectivity)

    # bincount over the labelled voxels only: the crop is mostly background
    gt_fg, pred_fg = gt_labels > 0, pred_labels > 0
    gt_size = np.bincount(gt_labels[gt_fg], minlength=n_gt + 1)[1:]
    pred_size = np.bincount(pred_labels[pred_fg], minlength=n_pred + 1)[1:]
    both = gt_fg & pred_fg
    g = gt_labels[both].astype(np.int64)
    p = pred_labels[both].astype(np.int64)
    # Components are disjoint, so |g ∩ U_g| is the number of g's voxels that are predicted at all.
    inter = np.bincount(g, minlength=n_gt + 1)[1:]
    pairs = np.unique(g * (n_pred + 1) + p)
    pair_g, pair_p = pairs // (n_pred + 1), pairs % (n_pred + 1)
    union_size = np.bincount(pair_g, weights=pred_size[pair_p - 1] if len(pairs) else None,
                             minlength=n_gt + 1)[1:]
    pred_hits = np.bincount(pair_p, minlength=n_pred + 1)[1:]

    gt_diam = equivalent_diameter_mm(gt_size, spacing_zyx)
    pred_diam = equivalent_diameter_mm(pred_size, spacing_zyx)
    gt_dice = dice_from_counts(inter, gt_size, union_size) if n_gt else np.zeros(0)
    return {
        "gt_n_voxels": gt_size,
        "gt_diameter_mm": np.atleast_1d(gt_diam).astype(np.float64) if n_gt else np.zeros(0),
        "gt_size": np.atleast_1d(size_bucket(gt_diam)) if n_gt else np.zeros(0, dtype="<U6"),
        "gt_dice": np.atleast_1d(gt_dice),
        "gt_detected": inter > 0,
        "pred_n_voxels": pred_size,
        "pred_diameter_mm": np.atleast_1d(pred_diam).astype(np.float64) if n_pred else np.zeros(0),
        "pred_is_fp": pred_hits == 0,
    }
