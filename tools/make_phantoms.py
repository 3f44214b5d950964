#!/usr/bin/env python
"""Write synthetic abdomen CT phantoms in the LiTS layout and prepare them into the cache (phantom_train/val).

    python tools/make_phantoms.py [--out $VA_DATASETS/phantom] [--cache $VA_DATASETS/cache/phantom] \
        [--num-cases 8] [--seed 0] [--profile abdomen|zcontext|zcontext_liver|zcontext_small] [--config-file ...yaml]

With ``--layout deeplesion``: a synthetic DeepLesion (DL_info.csv + Images_png, data/phantom_deeplesion.py), one
series per case, prepared as tools/prepare_deeplesion.py prepares DeepLesion (deeplesion_train/val/test); e.g. in its
own root:

    VA_DATASETS=datasets/synthetic_deeplesion python tools/make_phantoms.py --layout deeplesion --num-cases 30 \
        --workers 4 --config-file projects/VolumetricAttention/configs/DeepLesion/faster_rcnn_R_18_FPN_GN_va_bag3.yaml
"""
import argparse
import os
import sys

from volumetric_attention.data.builtin import datasets_root
from volumetric_attention.data.deeplesion import DEFAULT_HU_WINDOW, DEFAULT_SLICE_SPACING, prepare_deeplesion
from volumetric_attention.data.lits import prepare_lits
from volumetric_attention.data.phantom_deeplesion import DEFAULT_PROFILE, check_targets, write_deeplesion_phantoms
from volumetric_attention.data.phantoms import PROFILES, write_phantom_dataset
from volumetric_attention.data.prepare import add_common_arguments, prepare_and_report, settings_from_args
from volumetric_attention.utils.cli import setup_cli

# --layout: (default --out and --cache under $VA_DATASETS, default --profile)
LAYOUTS = {"lits": ("phantom", os.path.join("cache", "phantom"), "abdomen"),
           "deeplesion": ("DeepLesion", os.path.join("cache", "deeplesion"), DEFAULT_PROFILE)}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", default="lits", choices=sorted(LAYOUTS),
                        help="lits: volume-K/segmentation-K NIfTI (phantom_train/val); deeplesion: DL_info.csv + "
                             "Images_png (deeplesion_train/val/test)")
    parser.add_argument("--out", default=None, help="folder to write (default: $VA_DATASETS/phantom for lits, "
                                                    "$VA_DATASETS/DeepLesion for deeplesion)")
    parser.add_argument("--cache", default=None, help="cache folder to write (default: $VA_DATASETS/cache/phantom "
                                                      "for lits, $VA_DATASETS/cache/deeplesion for deeplesion)")
    parser.add_argument("--num-cases", type=int, default=8,
                        help="number of phantoms (lits: every 4th is val; deeplesion: series, split by patient)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slices", type=int, default=None,
                        help="slices per volume (default: random 40-80; deeplesion: 100-160 mm of slices)")
    parser.add_argument("--size", type=int, default=None,
                        help="in-plane size in pixels the anatomy is made at (default: the profile's, 128 or 256)")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="slice spacing of the phantoms in mm (default: random 1-3; deeplesion: 1-5 by series)")
    parser.add_argument("--profile", default=None, choices=sorted(PROFILES),
                        help="vessel and lesion sizes and counts, field of view (see data/phantoms.py; default: "
                             f"abdomen for lits, {DEFAULT_PROFILE} for deeplesion)")
    parser.add_argument("--no-prepare", action="store_true", help="only write the files, do not prepare them")
    return add_common_arguments(parser)


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_cli(log_threads=False)
    settings_from_args(args)  # a config error stops here, in one line, before a phantom is written
    out, cache, profile = LAYOUTS[args.layout]
    args.out = args.out or os.path.join(datasets_root(), out)
    args.cache = args.cache or os.path.join(datasets_root(), cache)
    args.profile = args.profile or profile
    if args.layout == "deeplesion":
        return make_deeplesion(args)
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
    return prepare_and_report(lambda: prepare_lits(args.out, args.cache, hu_window, slice_spacing, args.workers),
                              args.cache, "phantom", splits=("train", "val"))


def make_deeplesion(args):
    """``--layout deeplesion``: write the series, then prepare them as tools/prepare_deeplesion.py does (the same
    function, defaults and settings from the config, overrides and flags)."""
    try:
        check_targets(args.out, None if args.no_prepare else args.cache)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_deeplesion_phantoms(args.out, args.num_cases, args.seed, profile=args.profile, size=args.size,
                              slice_interval=args.slice_thickness, slices=args.slices, workers=args.workers,
                              progress=True)
    print(f"{args.num_cases} DeepLesion phantom series -> {args.out}", file=sys.stderr)
    if args.no_prepare:
        return 0
    hu_window, slice_spacing, cfg = settings_from_args(args, DEFAULT_HU_WINDOW, DEFAULT_SLICE_SPACING)
    return prepare_and_report(lambda: prepare_deeplesion(args.out, args.cache, hu_window, slice_spacing,
                                                         cfg.INPUT.CT.CONTEXT_SLICES, args.workers),
                              args.cache, "deeplesion")


if __name__ == "__main__":
    sys.exit(main())
