#!/usr/bin/env python
"""Write synthetic abdomen CT phantoms in the LiTS layout and prepare them into the cache (phantom_train/val).

    python tools/make_phantoms.py [--out $VA_DATASETS/phantom] [--cache $VA_DATASETS/cache/phantom] \
        [--num-cases 8] [--seed 0] [--profile abdomen|zcontext|zcontext_liver|zcontext_small] [--config-file ...yaml]
"""
import argparse
import os
import sys

from volumetric_attention.data.builtin import datasets_root
from volumetric_attention.data.lits import prepare_lits
from volumetric_attention.data.phantoms import PROFILES, write_phantom_dataset
from volumetric_attention.data.prepare import add_common_arguments, report, report_splits, settings_from_args
from volumetric_attention.utils.cli import setup_cli


def build_parser():
    root = datasets_root()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(root, "phantom"), help="folder for volume-K/segmentation-K")
    parser.add_argument("--cache", default=os.path.join(root, "cache", "phantom"), help="cache folder to write")
    parser.add_argument("--num-cases", type=int, default=8, help="number of phantoms (every 4th is val)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slices", type=int, default=None, help="slices per volume (default: random 40-80)")
    parser.add_argument("--size", type=int, default=None,
                        help="in-plane size in pixels the anatomy is made at (default: the profile's, 128 or 256)")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="slice spacing of the phantoms in mm (default: random 1-3)")
    parser.add_argument("--profile", default="abdomen", choices=sorted(PROFILES),
                        help="vessel and lesion sizes and counts, field of view (see data/phantoms.py)")
    parser.add_argument("--no-prepare", action="store_true", help="only write the NIfTI files")
    return add_common_arguments(parser)


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_cli(log_threads=False)
    shape = None
    default_size = PROFILES[args.profile].get("size_px", 128)
    size = args.size or default_size
    if args.slices is not None or size != default_size:
        shape = (args.slices or 60, size, size)
    spacing = None
    inplane = PROFILES[args.profile]["fov_mm"] / size
    if args.slice_thickness is not None:
        spacing = (args.slice_thickness, inplane, inplane)
    if shape is not None and spacing is None:
        spacing = (2.0, inplane, inplane)
    write_phantom_dataset(args.out, args.num_cases, args.seed, shape=shape, spacing=spacing, progress=True,
                          profile=args.profile)
    print(f"{args.num_cases} phantoms -> {args.out}", file=sys.stderr)
    if args.no_prepare:
        return 0
    hu_window, slice_spacing, _ = settings_from_args(args)
    result = prepare_lits(args.out, args.cache, hu_window, slice_spacing, args.workers)
    report_splits(args.cache, "phantom", splits=("train", "val"))
    return report(result, args.cache)


if __name__ == "__main__":
    sys.exit(main())
