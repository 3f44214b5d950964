#!/usr/bin/env python
"""Boxes on DeepLesion key slices: a trained detector's predictions (red, with scores) and the ground truth (green),
drawn with detectron2's Visualizer.

    python tools/visualize_detections.py --config-file CONFIG --weights model_final.pth --output DIR \
        [--dataset deeplesion_test] [--cases CASE[,CASE...] | --count 6] [--top 4] [--threads N] [KEY VALUE ...]

Each key slice is shown as the model sees it (the config's HU window) with the boxes the model predicts from its bag,
read from the prepared dataset as the evaluator reads it. Writes DIR/<case>.png per key slice and DIR/montage.png.
Key slices: --cases (case ids of the dataset), or --count of them spread evenly over the dataset's order. A bad input
(config, weights, dataset, case) is one line on stderr and exit status 2.
"""
import argparse
import os
import sys

# first: the package quiets the known third-party notices that importing detectron2 prints
from volumetric_attention.utils import cli
from volumetric_attention.utils.overrides import add_override_arguments
from volumetric_attention.utils.threads import add_threads_argument


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="the config the model was trained with")
    parser.add_argument("--weights", help="checkpoint (default: MODEL.WEIGHTS of the config)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--dataset", help="registered dataset (default: the config's first DATASETS.TEST)")
    parser.add_argument("--cases", help="comma-separated case ids of the key slices to draw")
    parser.add_argument("--count", type=int, default=6, help="key slices to draw without --cases (default 6)")
    # sensitivity at 4 FPs per image is the last point of the FROC's average: its detections are among the top few
    parser.add_argument("--top", type=int, default=4, help="highest-scoring predictions drawn per slice (default 4)")
    parser.add_argument("--scale", type=float, default=2.0, help="output pixels per slice pixel")
    add_threads_argument(parser)
    add_override_arguments(parser)
    return parser


def choose(dicts, cases, count):
    """The dataset dicts of ``cases`` (in that order), or ``count`` of them evenly spread over the dataset."""
    if cases:
        by_id = {d["case_id"]: d for d in dicts}
        unknown = [c for c in cases if c not in by_id]
        if unknown:
            raise ValueError(f"case(s) {', '.join(unknown)} not in the dataset (e.g. {dicts[0]['case_id']})")
        return [by_id[c] for c in cases]
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    count = min(count, len(dicts))
    return [dicts[(2 * k + 1) * len(dicts) // (2 * count)] for k in range(count)]


def load(args, cfg):
    """(model in eval mode, the chosen dataset dicts, dataset name); ValueError/OSError (one line) for bad input."""
    from volumetric_attention.data.dataset_checks import DatasetCheckError, check_datasets
    from volumetric_attention.utils.tensor_checkpoint import load_weights_strict

    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise ValueError("no dataset: give --dataset or set DATASETS.TEST")
    if dataset not in DatasetCatalog.list():
        raise ValueError(f"dataset {dataset} is not registered (e.g. deeplesion_test, deeplesion_val)")
    try:
        check_datasets(cfg, [("--dataset", dataset)])
    except DatasetCheckError as e:
        raise ValueError(str(e)) from None
    dicts = choose(DatasetCatalog.get(dataset), [c for c in (args.cases or "").split(",") if c], args.count)
    weights = args.weights or cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError("no weights: give --weights or MODEL.WEIGHTS")
    model = build_model(cfg)
    try:
        load_weights_strict(model, weights)
    except RuntimeError as e:
        raise ValueError(cli.one_line(e)) from None
    return model.eval(), dicts, dataset


def main(argv=None):
    args = get_parser().parse_args(argv)
    cli.setup_cli(args.threads)
    cfg = cli.config_from_args(args)
    import numpy as np
    import torch

    from volumetric_attention.data import VolumetricDatasetMapper
    from volumetric_attention.inference.overlays import draw_detection_overlay, write_montage, write_png

    from detectron2.structures import BoxMode

    try:
        model, dicts, dataset = load(args, cfg)
    except (ValueError, OSError) as e:
        print(f"error: {cli.one_line(e)}", file=sys.stderr)
        return 2
    mapper = VolumetricDatasetMapper(cfg, is_train=False)
    written, images, titles = [], [], []
    for d in dicts:
        with torch.no_grad():
            instances = model([mapper(d)])[0]["instances"].to("cpu")
        top = instances[torch.argsort(instances.scores, descending=True)[:max(args.top, 0)]]
        gt = [BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
              for a in d.get("annotations", [])]
        key_slice = mapper.open_case(d["case_dir"]).image[int(d["slice_index"])]
        gray = (np.asarray(key_slice, np.float32) * 255.0).round().astype(np.uint8)
        image = draw_detection_overlay(gray, top.pred_boxes.tensor.numpy(), top.scores.numpy(), gt, args.scale)
        images.append(image)
        titles.append(f"{d['case_id']}: {len(top)} predicted")
        written.append(write_png(os.path.join(args.output, f"{d['case_id']}.png"), image))
    written.append(write_montage(os.path.join(args.output, "montage.png"), images, titles,
                                 f"{dataset}: ground truth green, top {args.top} predictions red (score)"))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
