"""Dice coefficient with the LiTS convention for empty masks.

Dice(A, B) = 2 |A ∩ B| / (|A| + |B|). When both A and B are empty the Dice is 1 (nothing to find, nothing found);
when exactly one is empty it is 0 (follows from the formula). This is the LiTS challenge convention for cases without
tumour, and it is applied everywhere in this package (per case, global, per lesion).
"""
import numpy as np

__all__ = ["dice_score", "dice_from_counts"]


def dice_from_counts(intersection, size_a, size_b):
    """Dice from voxel counts, elementwise, with Dice = 1 where both sizes are 0.

    Args:
        intersection, size_a, size_b: numbers or arrays of the same shape (any), |A ∩ B|, |A|, |B|.
    Returns:
        float, or float64 array of the same shape.
    """
    intersection = np.asarray(intersection, dtype=np.float64)
    total = np.asarray(size_a, dtype=np.float64) + np.asarray(size_b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * intersection / np.where(total > 0, total, 1.0), 1.0)
    return float(dice) if dice.ndim == 0 else dice


def dice_score(pred, gt):
    """Dice between two boolean masks of the same shape (any shape, e.g. (Z, H, W)); 1.0 when both are empty."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {gt.shape}")
    inter = np.count_nonzero(pred & gt)
    return dice_from_counts(inter, np.count_nonzero(pred), np.count_nonzero(gt))
