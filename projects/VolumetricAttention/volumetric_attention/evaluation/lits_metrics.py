"""LiTS metrics of one case and their summary over a data set (pure numpy/scipy; no detectron2).

Definitions (labels 0 background, 1 liver, 2 lesion; both volumes on the original label grid):

* Liver mask = labels >= 1 (the liver includes its lesions, as in the LiTS ground truth); tumour mask = labels == 2.
* Dice per case: Dice of the case's masks; 1 when both are empty, 0 when exactly one is (LiTS convention).
  ``*_dice_per_case`` is the mean over cases (the LiTS ranking metric for tumour).
* Dice global: voxels pooled over all cases, ``2 Σ|P∩G| / (Σ|P| + Σ|G|)``.
* Lesions, per-lesion Dice, TP/FN/FP and size buckets: see :mod:`.lesions` (26-connected components on the original
  grid with its physical spacing; equivalent-sphere diameter; small < 15 mm <= medium <= 30 mm < large).
* ``lesion_dice_<size>``: mean per-lesion Dice over all GT lesions of that size in all cases (a missed lesion counts
  0); NaN when there is no such lesion. ``lesion_dice_all``: the same over all GT lesions.
* ``lesion_recall[_<size>]``: TP / (TP + FN) over the GT lesions (of that size) pooled over cases.
* ``fp_lesions_per_case``: number of FP predicted lesions / number of cases.
"""
import numpy as np

from .lesions import SIZE_BUCKETS, crop_to_foreground, match_lesions
from .metrics import dice_from_counts

__all__ = ["score_case", "summarize_cases", "in_percent", "CASE_FIELDS", "LESION_FIELDS", "PERCENT_KEYS",
           "CASE_PERCENT_FIELDS", "LESION_PERCENT_FIELDS"]

SIZES = tuple(name for name, _, _ in SIZE_BUCKETS)

CASE_FIELDS = (
    ["case_id", "liver_dice", "tumour_dice", "n_gt_lesions", "n_pred_lesions", "tp", "fn", "fp"]
    + [f"{k}_{s}" for s in SIZES for k in ("n_gt", "tp")]
    + ["gt_tumour_ml", "pred_tumour_ml", "liver_inter", "liver_pred", "liver_gt",
       "tumour_inter", "tumour_pred", "tumour_gt", "missing_slices"]
)
LESION_FIELDS = ["case_id", "lesion", "diameter_mm", "size", "n_voxels", "dice", "detected"]

# Keys of the summary reported in percent (like detectron2's COCO AP); the others are counts.
PERCENT_KEYS = (
    ["tumour_dice_per_case", "tumour_dice_global", "liver_dice_per_case", "liver_dice_global", "lesion_dice_all"]
    + [f"lesion_dice_{s}" for s in SIZES] + ["lesion_recall"] + [f"lesion_recall_{s}" for s in SIZES]
)

# Fields of the per-case and per-lesion rows that the output files give in percent, as the summary.
CASE_PERCENT_FIELDS = ("liver_dice", "tumour_dice")
LESION_PERCENT_FIELDS = ("dice",)


def in_percent(rows, fields):
    """Copies of ``rows`` (dicts of fractions, as :func:`score_case` returns) with ``fields`` x 100."""
    return [{k: (100.0 * v if k in fields and v is not None else v) for k, v in row.items()} for row in rows]


def _overlap_counts(pred, gt):
    inter = np.count_nonzero(pred & gt)
    return inter, np.count_nonzero(pred), np.count_nonzero(gt)


def score_case(pred_labels, gt_labels, spacing_zyx, case_id="", connectivity=26):
    """Score one case.

    Args:
        pred_labels, gt_labels: uint8 arrays (Z, H, W) on the same grid, values 0/1/2.
        spacing_zyx: (z, y, x) spacing of that grid in mm.
    Returns:
        (row, lesions): ``row`` a dict with the :data:`CASE_FIELDS` (voxel counts kept for the global Dice),
        ``lesions`` a list of dicts with the :data:`LESION_FIELDS`, one per GT lesion.
    """
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    if pred_labels.shape != gt_labels.shape:
        raise ValueError(f"case {case_id}: prediction {pred_labels.shape} and ground truth {gt_labels.shape} "
                         "are not on the same grid")
    # Everything outside the bounding box of all labelled voxels is background in both: score the crop only.
    cropped = crop_to_foreground(pred_labels, gt_labels)
    if cropped is not None:
        pred_labels, gt_labels = cropped
    liver = _overlap_counts(pred_labels >= 1, gt_labels >= 1)
    pred_t, gt_t = pred_labels == 2, gt_labels == 2
    tumour = _overlap_counts(pred_t, gt_t)
    m = match_lesions(gt_t, pred_t, spacing_zyx, connectivity=connectivity)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    row = {
        "case_id": case_id,
        "liver_dice": dice_from_counts(*liver),
        "tumour_dice": dice_from_counts(*tumour),
        "n_gt_lesions": int(len(m["gt_dice"])),
        "n_pred_lesions": int(len(m["pred_is_fp"])),
        "tp": int(m["gt_detected"].sum()),
        "fn": int((~m["gt_detected"]).sum()),
        "fp": int(m["pred_is_fp"].sum()),
        "gt_tumour_ml": tumour[2] * voxel_ml,
        "pred_tumour_ml": tumour[1] * voxel_ml,
        "liver_inter": int(liver[0]), "liver_pred": int(liver[1]), "liver_gt": int(liver[2]),
        "tumour_inter": int(tumour[0]), "tumour_pred": int(tumour[1]), "tumour_gt": int(tumour[2]),
        "missing_slices": 0,
    }
    for s in SIZES:
        in_s = m["gt_size"] == s
        row[f"n_gt_{s}"] = int(in_s.sum())
        row[f"tp_{s}"] = int((in_s & m["gt_detected"]).sum())
    lesions = [
        {"case_id": case_id, "lesion": i + 1, "diameter_mm": float(m["gt_diameter_mm"][i]),
         "size": str(m["gt_size"][i]), "n_voxels": int(m["gt_n_voxels"][i]), "dice": float(m["gt_dice"][i]),
         "detected": bool(m["gt_detected"][i])}
        for i in range(len(m["gt_dice"]))
    ]
    return row, lesions


def _mean(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def _ratio(num, den):
    return float(num) / float(den) if den else float("nan")


def summarize_cases(rows, lesions):
    """Summary over cases (fractions in [0, 1], not percent).

    Args:
        rows: per-case dicts from :func:`score_case`.
        lesions: all per-lesion dicts from :func:`score_case`, concatenated.
    Returns:
        dict: ``tumour_dice_per_case``, ``tumour_dice_global``, ``liver_dice_per_case``, ``liver_dice_global``,
        ``lesion_dice_{all,small,medium,large}``, ``lesion_recall[_{small,medium,large}]``,
        ``fp_lesions_per_case``, ``n_cases``, ``n_gt_lesions``, ``n_gt_lesions_{size}``.
    """
    def total(key):
        return sum(r[key] for r in rows)

    summary = {
        "tumour_dice_per_case": _mean([r["tumour_dice"] for r in rows]),
        "tumour_dice_global": dice_from_counts(total("tumour_inter"), total("tumour_pred"), total("tumour_gt")),
        "liver_dice_per_case": _mean([r["liver_dice"] for r in rows]),
        "liver_dice_global": dice_from_counts(total("liver_inter"), total("liver_pred"), total("liver_gt")),
        "lesion_dice_all": _mean([lesion["dice"] for lesion in lesions]),
    }
    for s in SIZES:
        summary[f"lesion_dice_{s}"] = _mean([lesion["dice"] for lesion in lesions if lesion["size"] == s])
    summary["lesion_recall"] = _ratio(total("tp"), total("tp") + total("fn"))
    for s in SIZES:
        summary[f"lesion_recall_{s}"] = _ratio(total(f"tp_{s}"), total(f"n_gt_{s}"))
    summary["fp_lesions_per_case"] = _ratio(total("fp"), len(rows))
    summary["n_cases"] = len(rows)
    summary["n_gt_lesions"] = int(total("n_gt_lesions"))
    for s in SIZES:
        summary[f"n_gt_lesions_{s}"] = int(total(f"n_gt_{s}"))
    return summary
