"""Dice, empty-case convention, lesion sizes and lesion matching against independent hand/closed-form counts."""
import math

import numpy as np
import pytest

from volumetric_attention.evaluation import (
    dice_score,
    equivalent_diameter_mm,
    find_lesions,
    match_lesions,
    score_case,
    size_bucket,
    summarize_cases,
)


def _sphere(shape, center, r2):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= r2


def test_dice_of_shifted_spheres_matches_row_by_row_count():
    shape, c, r, s = (40, 40, 50), (20, 20, 20), 12, 7
    a = _sphere(shape, c, r * r)
    b = _sphere(shape, (c[0], c[1], c[2] + s), r * r)
    # Independent count: along each x row a sphere is the integer interval [cx - h, cx + h], h = isqrt(r² - dz² - dy²).
    n_a = inter = 0
    for dz in range(-r, r + 1):
        for dy in range(-r, r + 1):
            h2 = r * r - dz * dz - dy * dy
            if h2 < 0:
                continue
            h = math.isqrt(h2)
            n_a += 2 * h + 1
            inter += max(0, min(h, s + h) - max(-h, s - h) + 1)
    expected = 2 * inter / (2 * n_a)
    assert dice_score(a, b) == pytest.approx(expected, abs=1e-12)
    # and the continuous closed form (lens volume of two equal spheres) within discretisation error
    lens = math.pi * (4 * r + s) * (2 * r - s) ** 2 / 12
    assert dice_score(a, b) == pytest.approx(lens / (4 / 3 * math.pi * r ** 3), abs=0.02)


def test_empty_case_convention():
    empty = np.zeros((3, 4, 4), bool)
    some = empty.copy()
    some[1, 1, 1] = True
    assert dice_score(empty, empty) == 1.0
    assert dice_score(some, empty) == 0.0
    assert dice_score(empty, some) == 0.0
    gt = np.zeros((3, 4, 4), np.uint8)
    gt[:, :2] = 1
    row, lesions = score_case(gt, gt, (1, 1, 1))
    assert row["tumour_dice"] == 1.0 and row["liver_dice"] == 1.0 and lesions == []
    pred = gt.copy()
    pred[0, 0, 0] = 2
    row, _ = score_case(pred, gt, (1, 1, 1))
    assert row["tumour_dice"] == 0.0 and row["fp"] == 1


def test_size_buckets_at_the_boundaries_with_anisotropic_spacing():
    spacing = (2.5, 0.8, 0.8)  # 1.6 mm³ per voxel
    # d = (6 n v / π)^(1/3): 15 mm at n = 1104.47 voxels, 30 mm at n = 8835.73 voxels
    counts = [1104, 1105, 8835, 8836]
    assert [d < 15 for d in (np.cbrt(6 * 1.6 * np.array(counts[:2]) / np.pi))] == [True, False]
    mask = np.zeros((30, 60, 300), bool)
    for k, n in enumerate(counts):
        block = np.zeros(30 * 25 * 60, bool)
        block[:n] = True  # whole planes, then whole rows, then a partial row: one connected component
        mask[:, :25, k * 75: k * 75 + 60] = block.reshape(30, 25, 60)
    lesions = sorted(find_lesions(mask, spacing, axial_diameter=False), key=lambda lesion: lesion.n_voxels)
    assert [lesion.n_voxels for lesion in lesions] == counts
    assert [lesion.size for lesion in lesions] == ["small", "medium", "medium", "large"]
    assert lesions[0].volume_ml == pytest.approx(1104 * 1.6 / 1000)
    assert size_bucket(15.0) == "medium" and size_bucket(30.0) == "medium"
    assert size_bucket(14.999) == "small" and size_bucket(30.001) == "large"
    assert equivalent_diameter_mm(1, (1, 1, 1)) == pytest.approx((6 / math.pi) ** (1 / 3))


def test_lesion_matching_counts_and_per_lesion_dice():
    gt = np.zeros((16, 32, 32), bool)
    pred = np.zeros_like(gt)
    gt[2:6, 2:6, 2:6] = True       # A: found by a 1-voxel-shifted prediction
    pred[2:6, 2:6, 3:7] = True     #    Dice 2*48 / (64 + 64) = 0.75
    gt[2:6, 10:14, 2:6] = True     # B: inside a prediction twice its size
    pred[2:6, 10:14, 2:10] = True  #    Dice 2*64 / (64 + 128) = 2/3
    gt[2:6, 20:24, 20:24] = True   # C: missed
    gt[10:12, 2:4, 20:22] = True   # D: missed
    pred[12:14, 25:27, 25:27] = True  # FP: touches no GT
    gt[10:12, 10:12, 10:12] = True  # E and F: separate GT lesions merged by one prediction
    gt[10:12, 10:12, 13:15] = True
    pred[10:12, 10:12, 10:15] = True  # 20 voxels: Dice(E) = Dice(F) = 2*8 / (8 + 20)
    m = match_lesions(gt, pred, (1.0, 1.0, 1.0))
    by_size = {}
    for n, dice, det in zip(m["gt_n_voxels"], m["gt_dice"], m["gt_detected"]):
        by_size.setdefault(int(n), []).append((round(float(dice), 6), bool(det)))
    assert sorted(by_size[64]) == sorted([(0.75, True), (round(2 / 3, 6), True), (0.0, False)])
    assert sorted(by_size[8]) == [(0.0, False), (round(16 / 28, 6), True), (round(16 / 28, 6), True)]
    assert int(m["gt_detected"].sum()) == 4 and int((~m["gt_detected"]).sum()) == 2
    assert int(m["pred_is_fp"].sum()) == 1 and len(m["pred_is_fp"]) == 4

    labels_gt = gt.astype(np.uint8) * 2
    labels_pred = pred.astype(np.uint8) * 2
    row, lesions = score_case(labels_pred, labels_gt, (1.0, 1.0, 1.0), case_id="x")
    assert (row["tp"], row["fn"], row["fp"], row["n_gt_lesions"]) == (4, 2, 1, 6)
    s = summarize_cases([row], lesions)
    assert s["lesion_recall"] == pytest.approx(4 / 6)
    assert s["fp_lesions_per_case"] == 1.0
    assert s["lesion_dice_all"] == pytest.approx((0.75 + 2 / 3 + 2 * 16 / 28) / 6)
    assert s["lesion_dice_small"] == pytest.approx(s["lesion_dice_all"])  # all under 15 mm at 1 mm spacing
    assert math.isnan(s["lesion_dice_large"])


def test_six_connectivity_splits_diagonal_voxels():
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    assert len(find_lesions(mask, (1, 1, 1), connectivity=26)) == 1
    assert len(find_lesions(mask, (1, 1, 1), connectivity=6)) == 2


def test_find_lesions_geometry():
    mask = np.zeros((5, 20, 20), bool)
    mask[1:3, 2:5, 2:12] = True  # 2 x 3 x 10 voxels
    (lesion,) = find_lesions(mask, (2.0, 0.5, 1.0))
    assert lesion.centroid_zyx == (1.5, 3.0, 6.5)
    assert lesion.bbox_zyx == (1, 2, 2, 3, 5, 12)
    assert lesion.volume_ml == pytest.approx(60 * 1.0 / 1000)
    # corner to corner of the 3 x 10 pixel rectangle: 1.5 mm by 10 mm
    assert lesion.longest_axial_diameter_mm == pytest.approx(math.hypot(1.5, 10.0))


def test_global_dice_pools_voxels():
    a = np.zeros((2, 4, 4), np.uint8)
    b = a.copy()
    a[0, :2, :2] = 2  # case 1: gt 4 voxels, pred 4 voxels, 2 overlapping
    b[0, :2, 1:3] = 2
    r1, l1 = score_case(b, a, (1, 1, 1), "1")
    big = np.zeros((2, 4, 4), np.uint8)
    big[1] = 2  # case 2: gt 16, pred 0
    r2, l2 = score_case(np.zeros_like(big), big, (1, 1, 1), "2")
    s = summarize_cases([r1, r2], l1 + l2)
    assert s["tumour_dice_per_case"] == pytest.approx((0.5 + 0.0) / 2)
    assert s["tumour_dice_global"] == pytest.approx(2 * 2 / (4 + 4 + 16))
