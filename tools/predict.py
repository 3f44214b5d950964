#!/usr/bin/env python
"""Segment CT volumes with a trained VA model: a label map on each input's grid plus its lesion list.

    python tools/predict.py --config-file CONFIG --weights model_final.pth --input INPUT [INPUT ...] --output OUT \
        [--threads N] [KEY VALUE ...]        (config overrides last; "--opts KEY VALUE ..." works too)

INPUT is a volume file (.nii, .nii.gz, .nrrd, .mha, .mhd), a folder of such files, a DICOM series folder, or a glob.
For each case OUT/<case>.nii.gz holds labels 0 background, 1 liver, 2 lesion on exactly the input's grid, and
OUT/<case>_lesions.{json,csv} lists the 3D lesions. A bad input is reported on one line and the others go on; the
exit status is non-zero if any case failed. Outputs appear atomically.
"""
import argparse
import glob
import os
import sys

# first: the package quiets the known third-party notices that importing detectron2 prints
from volumetric_attention.utils import cli
from volumetric_attention.utils.overrides import add_override_arguments
from volumetric_attention.utils.threads import add_threads_argument


def expand_inputs(inputs):
    """Volume files and DICOM folders named by ``inputs`` (files, folders, globs), in a stable order."""
    from volumetric_attention.data.volume_io import VOLUME_SUFFIXES

    found = []
    for item in inputs:
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            found.append(item)  # reported later as "file not found"
        for path in matches:
            if os.path.isdir(path):
                volumes = sorted(
                    os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(VOLUME_SUFFIXES)
                )
                found.extend(volumes or [path])  # a folder without volume files is read as one DICOM series
            else:
                found.append(path)
    return list(dict.fromkeys(found))


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", required=True, help="volume files, folders or globs")
    parser.add_argument("--config-file", required=True, help="the config the model was trained with")
    parser.add_argument("--weights", help="checkpoint (default: MODEL.WEIGHTS of the config)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--format", default="nii.gz", choices=["nii.gz", "nii", "nrrd", "mha"], help="label file type")
    parser.add_argument("--batch-size", type=int, default=4, help="target slices per forward pass")
    parser.add_argument("--no-feature-cache", action="store_true", help="recompute every bag image (slower)")
    parser.add_argument("--skip-existing", action="store_true", help="skip cases whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_threads_argument(parser)
    add_override_arguments(parser)
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    cli.setup_cli(args.threads)
    cfg = cli.config_from_args(args)
    from volumetric_attention.data.volume_io import case_name
    from volumetric_attention.inference import VolumePredictor, write_lesion_report

    try:
        weights = args.weights or cfg.MODEL.WEIGHTS
        predictor = VolumePredictor(
            cfg, weights, batch_size=args.batch_size, use_feature_cache=not args.no_feature_cache,
            progress=not args.no_progress,
        )
    except Exception as e:  # noqa: BLE001  (a setup problem stops everything, with its one-line reason)
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    os.makedirs(args.output, exist_ok=True)
    cases = expand_inputs(args.input)
    failures = []
    for path in cases:
        name = case_name(path)
        label_path = os.path.join(args.output, f"{name}.{args.format}")
        report_base = os.path.join(args.output, f"{name}_lesions")
        if args.skip_existing and os.path.exists(label_path) and os.path.exists(report_base + ".json"):
            print(f"{name}: outputs exist, skipped")
            continue
        try:
            prediction = predictor(path)
            prediction.write(label_path)
            write_lesion_report(prediction.lesions, report_base)
        except Exception as e:  # noqa: BLE001  (one bad case must not stop the others)
            reason = " ".join(str(e).split())
            if not reason.startswith(str(path)):
                reason = f"{path}: {reason}"
            print(f"error: {reason}", file=sys.stderr)
            failures.append(path)
            continue
        print(f"{name}: {label_path} ({len(prediction.lesions)} lesions)")
    if failures:
        print(f"{len(failures)} of {len(cases)} cases failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
