#!/usr/bin/env python
"""Prepare DeepLesion key slices (with interpolated neighbour slices) into the cache the data loader reads.

    python tools/prepare_deeplesion.py --source $VA_DATASETS/DeepLesion --cache $VA_DATASETS/cache/deeplesion \
        [--config-file projects/VolumetricAttention/configs/DeepLesion/Base-DeepLesion-Faster-RCNN.yaml] [--workers 8]

Without --config-file the DeepLesion defaults are used: HU window [-1024, 3071], 2 mm slice interval (as 3DCE).
Finished cases are skipped; a cache made with other settings is rebuilt. Exits 1 listing the cases that failed.
"""
import argparse
import os
import sys

from volumetric_attention.data.builtin import datasets_root
from volumetric_attention.data.deeplesion import DEFAULT_HU_WINDOW, DEFAULT_SLICE_SPACING, prepare_deeplesion
from volumetric_attention.data.prepare import add_common_arguments, prepare_and_report, settings_from_args
from volumetric_attention.utils.cli import setup_cli


def build_parser():
    root = datasets_root()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.path.join(root, "DeepLesion"),
                        help="folder with DL_info.csv and Images_png/")
    parser.add_argument("--cache", default=os.path.join(root, "cache", "deeplesion"), help="cache folder to write")
    parser.add_argument("--context-slices", type=int, default=None, help="override INPUT.CT.CONTEXT_SLICES")
    return add_common_arguments(parser)


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_cli(log_threads=False)
    hu_window, slice_spacing, cfg = settings_from_args(args, DEFAULT_HU_WINDOW, DEFAULT_SLICE_SPACING)
    context = args.context_slices if args.context_slices is not None else cfg.INPUT.CT.CONTEXT_SLICES
    return prepare_and_report(
        lambda: prepare_deeplesion(args.source, args.cache, hu_window, slice_spacing, context, args.workers),
        args.cache, "deeplesion")


if __name__ == "__main__":
    sys.exit(main())
