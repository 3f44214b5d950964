#!/usr/bin/env python
"""Prepare LiTS / MSD Task03_Liver (or phantom) volumes into the cache the data loader reads.

    python tools/prepare_lits.py --source $VA_DATASETS/LiTS --cache $VA_DATASETS/cache/lits \
        [--config-file projects/VolumetricAttention/configs/LiTS/....yaml] [--workers 4] [KEY VALUE ...]

Finished cases are skipped; a cache made with other settings is rebuilt. Exits 1 listing the cases that failed.
"""
import argparse
import os
import sys

from volumetric_attention.data.builtin import datasets_root
from volumetric_attention.data.lits import prepare_lits
from volumetric_attention.data.prepare import add_common_arguments, prepare_and_report, settings_from_args
from volumetric_attention.utils.cli import setup_cli


def build_parser():
    root = datasets_root()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.path.join(root, "LiTS"), help="folder with the LiTS/MSD volumes")
    parser.add_argument("--cache", default=os.path.join(root, "cache", "lits"), help="cache folder to write")
    return add_common_arguments(parser)


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_cli(log_threads=False)
    hu_window, slice_spacing, _ = settings_from_args(args)
    return prepare_and_report(lambda: prepare_lits(args.source, args.cache, hu_window, slice_spacing, args.workers),
                              args.cache, "lits")


if __name__ == "__main__":
    sys.exit(main())
