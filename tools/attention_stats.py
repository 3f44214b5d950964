#!/usr/bin/env python
"""What a trained VA model's attention does, per FPN level, on labelled slices of a test dataset.

    python tools/attention_stats.py --config-file CONFIG.yaml [--dataset NAME] [--num-slices 64] \
        [--json OUT.json] [--threads N] [KEY VALUE ...]   (config overrides last, e.g. MODEL.WEIGHTS model_final.pth;
                                                          "--opts KEY VALUE ..." works too)

For each level with VA it prints:
* the slice weights of eq. 2 (channel) and eq. 3 (spatial), softmax over the bag's N images: the mean of their
  maximum (1.0 means the softmax has saturated on one image, so the attention reads one slice of the bag and its
  gradient through the weights vanishes) and the mean weight of the target's own image;
* the share of each gate's input (the attention-weighted bag embedding) that is positive: with the paper's ReLU
  before the gate conv (``MODEL.VA.GATE_RELU``), a share near 0 is a gate that gets no gradient;
* each gate's mean and spread (over channels / positions), as ``VAStatsHook`` records them in training;
* the mean spatial gate over the pixels of four regions of the target slice:
  background, liver, *lesion-like liver* (liver pixels whose smoothed intensity differs from the slice's median
  liver intensity by more than ``--lesion-like-hu``: vessels, in CT and in the phantoms) and lesion.
  A spatial gate that is lower on lesion-like liver than on lesions is VA telling vessels from lesions.

Slices are drawn (seeded) from the target slices with a lesion. The model and the images are built exactly as for
evaluation (``VolumetricDatasetMapper`` for testing, the model's pixel normalisation and size divisibility).
"""
import argparse
import sys

REGIONS = ("background", "liver", "lesion_like_liver", "lesion")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", help="dataset name (default: the config's first DATASETS.TEST)")
    parser.add_argument("--num-slices", type=int, default=64, help="slices with a lesion to draw")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lesion-like-hu", type=float, default=35.0,
                        help="HU distance from the median liver intensity that makes a liver pixel lesion-like")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the statistics to this JSON file")
    from volumetric_attention.utils.overrides import add_override_arguments
    from volumetric_attention.utils.threads import add_threads_argument

    add_threads_argument(parser)
    add_override_arguments(parser)
    return parser


def region_masks(labels, image_centre, lesion_like):
    """Boolean masks ``{region: [H, W]}`` of one slice.

    Args:
        labels: ``[H, W]`` int, 0 background / 1 liver / 2 lesion.
        image_centre: ``[H, W]`` float, the target slice's intensities on the model's scale.
        lesion_like: intensity distance (same scale) from the median liver intensity that makes a liver pixel
            lesion-like; measured on the image smoothed with a Gaussian of sigma 1 pixel.
    """
    import numpy as np
    from scipy import ndimage

    liver = labels == 1
    masks = {"background": labels == 0, "liver": liver, "lesion": labels == 2,
             "lesion_like_liver": np.zeros_like(liver)}
    if liver.any():
        smooth = ndimage.gaussian_filter(image_centre.astype(np.float32), sigma=1.0)
        masks["lesion_like_liver"] = liver & (np.abs(smooth - np.median(smooth[liver])) > lesion_like)
        masks["liver"] = liver & ~masks["lesion_like_liver"]
    return masks


def collect(model, batches, lesion_like):
    """Accumulate attention statistics over ``batches`` (lists of mapper outputs with ``sem_seg``).

    Returns:
        ``{level: {...}}``, means over slices: for each attention kind (channel, spatial) what ``VAStatsHook``
        records in training (``<kind>_max_weight``, ``<kind>_gate_mean``, ``<kind>_gate_std``,
        ``<kind>_context_positive``: :func:`~volumetric_attention.engine.va_stats_hook.attention_statistics`) and
        ``<kind>_target_weight``; and ``spatial_gate_<region>``, means over the region's pixels.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from volumetric_attention.engine.va_stats_hook import KINDS, attention_statistics

    from detectron2.structures import ImageList

    backbone = model.backbone
    n = backbone.bag_size
    centre_channel = 3 * (n // 2) + 1
    sums, counts = {}, {}

    def add(level, key, value, count=1):
        sums.setdefault(level, {}).setdefault(key, 0.0)
        counts.setdefault(level, {}).setdefault(key, 0)
        sums[level][key] += float(value)
        counts[level][key] += int(count)

    for batch in batches:
        images = [(x["image"].to(model.pixel_mean.device) - model.pixel_mean) / model.pixel_std for x in batch]
        images = ImageList.from_tensors(images, backbone.size_divisibility).tensor
        b, _, h, w = images.shape
        # region masks on the padded input grid (padding is background)
        masks = []
        for x in batch:
            m = region_masks(x["sem_seg"].numpy(), x["image"][centre_channel].numpy(), lesion_like)
            padded = {}
            for r in REGIONS:
                full = np.zeros((h, w), dtype=bool)
                full[: m[r].shape[0], : m[r].shape[1]] = m[r]
                padded[r] = torch.from_numpy(full)
            masks.append(padded)
        with torch.no_grad():
            features = backbone.extract_features(images.reshape(b * n, 3, h, w))
            for level in backbone.va_levels:
                bag = features[level].reshape(b, n, *features[level].shape[1:])
                va = backbone.va[level] if isinstance(backbone.va, torch.nn.ModuleDict) else backbone.va
                _, attn = va(bag[:, n // 2], bag, return_attention=True)
                for key, value in attention_statistics(attn).items():  # what VAStatsHook records in training
                    add(level, key, value * b, b)
                for kind in KINDS:
                    if f"{kind}_weights" in attn:
                        add(level, f"{kind}_target_weight", attn[f"{kind}_weights"][:, n // 2].sum(), b)
                gate = attn.get("spatial_gate")
                if gate is None:
                    continue
                gh, gw = gate.shape[-2:]
                for i in range(b):
                    for r in REGIONS:
                        # a feature cell belongs to a region when the input pixel at its centre does
                        small = F.interpolate(masks[i][r][None, None].float(), size=(gh, gw), mode="nearest")[0, 0]
                        small = small.bool()
                        if small.any():
                            add(level, f"spatial_gate_{r}", gate[i, 0][small].sum(), int(small.sum()))
    return {level: {k: sums[level][k] / counts[level][k] for k in sums[level]} for level in sums}


def table(stats):
    keys = [f"{kind}_{stat}" for kind in ("channel", "spatial") for stat in (
        "max_weight", "target_weight", "gate_mean", "gate_std", "context_positive")] + [
        f"spatial_gate_{r}" for r in REGIONS]
    lines = ["| level | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for level, values in stats.items():
        cells = [f"{values[k]:.3f}" if k in values else "n/a" for k in keys]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = get_parser().parse_args(argv)
    import numpy as np

    # first: the package quiets the known third-party notices that importing detectron2 prints
    from volumetric_attention.data import VolumetricDatasetMapper
    from volumetric_attention.utils import cli

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng

    cli.setup_cli(args.threads)
    cfg = cli.config_from_args(args)
    if not cfg.MODEL.VA.ENABLED or cfg.MODEL.VA.LOCATION != "RPN":
        print("attention_stats: error: the config has no VA in the backbone (MODEL.VA.ENABLED True, "
              "LOCATION RPN needed)", file=sys.stderr)
        return 2
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    # seeded as train_net seeds before building the model: with MODEL.WEIGHTS "" this is a run's initial model
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)

    dicts = [d for d in DatasetCatalog.get(dataset) if any(a["category_id"] == 1 for a in d.get("annotations", []))]
    if not dicts:
        print(f"attention_stats: error: {dataset} has no slice with a lesion", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    picked = [dicts[i] for i in sorted(rng.choice(len(dicts), min(args.num_slices, len(dicts)), replace=False))]
    mapper_args = VolumetricDatasetMapper.from_config(cfg, is_train=False)
    mapper_args["targets"] = ("sem_seg",)
    mapper = VolumetricDatasetMapper(**mapper_args)
    mapped = [mapper(d) for d in picked]
    batches = [mapped[i: i + args.batch_size] for i in range(0, len(mapped), args.batch_size)]
    # the window maps HU to 0..255 on the model's scale
    low, high = cfg.INPUT.CT.HU_WINDOW
    stats = collect(model, batches, args.lesion_like_hu * 255.0 / (high - low))
    print(f"{len(mapped)} slices with a lesion from {dataset}, bag of {model.backbone.bag_size}")
    print(table(stats))
    if args.json:
        from volumetric_attention.evaluation.results_io import write_json

        write_json(args.json, {"dataset": dataset, "slices": len(mapped), "levels": stats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
