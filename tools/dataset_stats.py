#!/usr/bin/env python
"""Lesion statistics of a LiTS-layout dataset (LiTS, MSD Task03_Liver or generated phantoms), per split.

    python tools/dataset_stats.py DATASET_FOLDER [--json OUT.json]

For the cases the prepare step would split into train and val (every 4th labeled case is val): the number of cases
and lesions, the lesions' equivalent-sphere diameters and size buckets (the evaluator's definitions), the lesion
voxels as a share of the liver's, and the share of liver slices that hold a lesion (what a slice sampler sees). A
case that cannot be read is reported on one line and left out; the exit status is then 1.
"""
import argparse
import json
import statistics
import sys
from collections import Counter

import numpy as np


def case_stats(case):
    """{"lesion_diameters_mm", "lesion_share", "lesion_slice_share"} of one labeled case."""
    from volumetric_attention.data.volume_io import read_volume
    from volumetric_attention.inference.lesion_components import find_lesions

    labels, geometry = read_volume(case["label"], dtype=np.uint8)
    image, image_geometry = read_volume(case["image"], dtype=np.float32)
    if labels.shape != image.shape:
        raise ValueError(f"{case['label']}: segmentation {labels.shape} does not match its volume {image.shape}")
    liver, lesion = labels >= 1, labels == 2
    liver_slices = liver.any(axis=(1, 2))
    lesions = find_lesions(lesion, geometry.spacing_zyx, axial_diameter=False)
    return {
        "lesion_diameters_mm": [lesion.diameter_mm for lesion in lesions],
        "lesion_share": float(lesion.sum() / max(int(liver.sum()), 1)),
        "lesion_slice_share": float(lesion.any(axis=(1, 2))[liver_slices].mean()) if liver_slices.any() else 0.0,
    }


def summarize(rows):
    """One split's figures from its cases' :func:`case_stats`."""
    from volumetric_attention.inference.lesion_components import size_bucket

    diameters = [d for r in rows for d in r["lesion_diameters_mm"]]
    shares = [100.0 * r["lesion_share"] for r in rows]
    return {
        "cases": len(rows),
        "lesions": len(diameters),
        "lesions_by_size": dict(Counter(size_bucket(d) for d in diameters)),
        "diameter_mm_min_median_max": ([min(diameters), statistics.median(diameters), max(diameters)]
                                       if diameters else None),
        "lesion_percent_of_liver_min_max": [min(shares), max(shares)],
        "liver_slices_with_lesion_percent": 100.0 * statistics.fmean(r["lesion_slice_share"] for r in rows),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a LiTS-layout folder (volume-K / segmentation-K, or imagesTr / labelsTr)")
    parser.add_argument("--json", help="also write the figures to this JSON file (atomically)")
    args = parser.parse_args(argv)
    from volumetric_attention.data.lits import assign_splits, discover_lits_cases
    from volumetric_attention.utils.atomic_io import write_text_atomic
    from volumetric_attention.utils.cli import one_line, setup_cli
    from volumetric_attention.utils.progress import progress_bar

    setup_cli(log_threads=False)
    cases = [c for c in discover_lits_cases(args.folder) if c["labeled"]]
    if not cases:
        print(f"error: {args.folder}: no labeled LiTS-layout case (volume-K.nii[.gz] + segmentation-K)",
              file=sys.stderr)
        return 2
    splits = assign_splits(cases)
    rows, failed = {}, []
    for case in progress_bar(cases, desc="cases"):
        try:
            if case["label"] is None:
                raise ValueError(f"{case['image']}: no segmentation for this volume")
            rows.setdefault(splits[case["case_id"]], []).append(case_stats(case))
        except Exception as e:  # a bad case is listed, the others go on
            failed.append(one_line(e))
    result = {split: summarize(r) for split, r in sorted(rows.items())}
    for split, s in result.items():
        d = s["diameter_mm_min_median_max"]
        print(f"{split}: {s['cases']} cases, {s['lesions']} lesions {s['lesions_by_size']}"
              + (f", diameter {d[0]:.1f}-{d[2]:.1f} mm (median {d[1]:.1f})" if d else "")
              + f", lesion voxels {s['lesion_percent_of_liver_min_max'][0]:.2f}-"
              f"{s['lesion_percent_of_liver_min_max'][1]:.2f}% of the liver's, "
              f"{s['liver_slices_with_lesion_percent']:.0f}% of liver slices hold a lesion")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
