#!/usr/bin/env python
"""Slice overlays of predictions and/or ground truth (liver red, lesion green), drawn with detectron2's Visualizer.

    python tools/visualize.py --volume CT.nii.gz [--prediction PRED.nii.gz] [--ground-truth SEG.nii.gz] --output DIR

Writes DIR/<case>_z<k>.png for the slices that matter most (or --slices) and DIR/<case>_montage.png.
Predictions are filled, the ground truth is outlined. Label files must be on the CT's grid.
"""
import argparse
import sys


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volume", required=True, help="CT volume (NIfTI, NRRD/MHA, DICOM folder)")
    parser.add_argument("--prediction", help="predicted label map (0/1/2) on the CT's grid")
    parser.add_argument("--ground-truth", help="reference label map (0/1/2) on the CT's grid")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--slices", type=int, nargs="*", help="axial slice indices (canonical, inferior first)")
    parser.add_argument("--count", type=int, default=6, help="number of slices chosen automatically")
    parser.add_argument("--hu-window", type=float, nargs=2, default=(-200.0, 300.0), help="display window")
    parser.add_argument("--scale", type=float, default=2.0, help="output pixels per voxel")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    from volumetric_attention.inference.overlays import render_case
    from volumetric_attention.utils.cli import setup_cli

    setup_cli(log_threads=False)

    if not args.prediction and not args.ground_truth:
        print("error: give --prediction and/or --ground-truth", file=sys.stderr)
        return 2
    try:
        written = render_case(
            args.volume, args.output, prediction=args.prediction, ground_truth=args.ground_truth,
            slices=args.slices, count=args.count, hu_window=tuple(args.hu_window), scale=args.scale,
        )
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
