#!/usr/bin/env python
"""Speed and memory of Volumetric Attention, measured side by side with the 2.5D baseline in one run.

    python tools/benchmark.py [--output benchmark.json] [--size 160] [--slices 24] [--train-iters 6] [--device cpu] \
        [--threads N] [--repeats 3] [--skip SECTION ... | --only SECTION ...]

It starts by printing its torch thread count and the machine's load, and warns when other processes hold the CPUs:
wall-clock ratios taken then are unreliable.

Reports ratios against the baseline (absolute times depend on the machine; on CUDA the device is synchronised
before each reading):
  * inference: per slice, baseline; VA naive and VA with the per-volume feature cache, for N = 3 and N = 9
    (the best of --repeats round-robin passes over one volume)
  * cost: the VA module's parameters (share of the model) and FLOPs (fvcore) against the backbone
  * training: seconds per iteration, peak memory and backbone images per target, baseline vs VA N = 3 and N = 9
    with independent targets, each with and without gradients through the bag's context images
    (MODEL.VA.CONTEXT_GRAD), and VA N = 3 with DATALOADER.SHARED_BAG_TARGETS = the batch size (one group of targets
    3 slices apart per batch, whose bags share backbone passes); each in a fresh process
  * memory: activation bytes autograd keeps per target in the LiTS R50 VA-FPN backbone at 512 px (float32), bags
    of 1, 3 and 9, with and without context gradients (the saved tensors themselves, no GPU needed)
  * loader: bags per second at 512 x 512 (N = 3, one core)
  * deeplesion_cache: the DeepLesion slice store's bytes per key slice against the dataset's PNGs, and loader bags
    per second (a generated 512 x 512 folder in DeepLesion's layout)
  * evaluator: seconds to score one 512 x 512 x 600 case
  * evaluation: seconds per case of LiTS evaluation (inference + evaluator) on --eval-cases phantom cases of
    --slices x --size x --size, detectron2's per-slice path against case-level (TEST.CT.CASE_LEVEL), for the
    baseline and VA N = 3 and N = 9 (the best of --repeats round-robin passes)
  * phantoms: seconds to make one phantom of each profile at its default size (one core)
  * study_rows: seconds per training iteration, the batch's loading included, of each row of the small-lesion and
    pretrained studies with its own config (batch 4, 128 px, 4 zcontext_small phantoms), each in a fresh process,
    as a ratio to early fusion: the iterations of early fusion's equal-time row (tools/zcontext_study.sh), and VA
    + context features with CONTEXT_GRAD False against the full row
Except in study_rows, all models are the CPU-sized phantom Mask R-CNN (ResNet-18, GN) with random weights; every
model is made to return the same number of detections, so the heads cost the same and the difference is the backbone
and VA.
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile

import numpy as np
import torch
from _machine_load import cpu_contention_warning, machine_load
from _timing import best_of, timed, timed_training, variant_config

# first: the package quiets the known third-party notices that importing detectron2 prints (and registers backbones)
from volumetric_attention.utils import cli
from volumetric_attention.utils.atomic_io import atomic_open
from volumetric_attention.utils.threads import add_threads_argument

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "projects", "VolumetricAttention", "configs")
PHANTOM = os.path.join(CONFIGS, "Phantom", "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")
LITS_VA = os.path.join(CONFIGS, "LiTS", "mask_rcnn_R_50_FPN_va_bag9.yaml")
# SOLVER.IMS_PER_BATCH of the training benchmark; the shared-bag run groups all of a batch's targets
TRAIN_BATCH = 4
# the same fixed number of detections for every model: equal head cost
FIXED_DETECTIONS = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "TEST.DETECTIONS_PER_IMAGE", 20,
                    "TEST.CT.SCORE_THRESH", 0.0]


def phantom_config(args, bag_size, extra=()):
    """The CPU-sized phantom Mask R-CNN at ``--size`` px on ``--device``, bag of ``bag_size`` (1: the baseline)."""
    return variant_config(PHANTOM, args.device, bag_size, args.size, [*FIXED_DETECTIONS, *extra])


def bench_inference(args, weights_dir):
    """Seconds per slice of VolumePredictor over one preprocessed volume, per model variant."""
    from volumetric_attention.engine import VACheckpointer
    from volumetric_attention.inference import VolumePredictor

    from detectron2.modeling import build_model

    rng = np.random.default_rng(0)
    image = rng.random((args.slices, args.size, args.size), dtype=np.float32)
    variants = [("baseline", 1, False), ("VA naive N=3", 3, False), ("VA cached N=3", 3, True),
                ("VA naive N=9", 9, False), ("VA cached N=9", 9, True)]
    predictors = []
    for name, bag, cached in variants:
        cfg = phantom_config(args, bag)
        path = os.path.join(weights_dir, f"bag{bag}.pth")
        if not os.path.exists(path):
            torch.manual_seed(0)
            VACheckpointer(build_model(cfg), weights_dir).save(f"bag{bag}")
        predictor = VolumePredictor(cfg, path, batch_size=4, use_feature_cache=cached, progress=False)
        predictor.predict_cache_grid(image[:6])  # warm-up
        predictors.append(predictor)
    backbone = {}  # backbone images of each variant's volume

    def predict(i):
        backbone[i] = predictors[i].predict_cache_grid(image)[2]

    best = best_of([lambda i=i: predict(i) for i in range(len(variants))], args.repeats, args.device)
    rows = [{"variant": name, "s_per_slice": t / args.slices, "backbone_images_per_slice": backbone[i] / args.slices}
            for i, ((name, _, _), t) in enumerate(zip(variants, best))]
    base = rows[0]["s_per_slice"]
    for row in rows:
        row["x_baseline"] = row["s_per_slice"] / base
    return rows


def bench_va_cost(args):
    """VA parameters as a share of the model, and backbone FLOPs with and without VA (fvcore), per bag image."""
    from detectron2.modeling import build_model

    rows = []
    x1 = torch.zeros(1, 3, args.size, args.size)
    for bag in (3, 9):
        model = build_model(variant_config(PHANTOM, "cpu", bag, args.size, FIXED_DETECTIONS)).eval()
        total = sum(p.numel() for p in model.parameters())
        va = sum(p.numel() for n, p in model.named_parameters() if ".va." in n or n.startswith("backbone.va"))
        backbone = model.backbone
        # a bag's forward = the backbone over N images + VA; VA alone = that - N x one image's extract_features
        bag_flops = _flops(backbone, torch.zeros(1, 3 * bag, args.size, args.size))
        single = _flops(_SingleImage(backbone), x1)
        va_flops = bag_flops - bag * single
        rows.append({"bag_size": bag, "va_params": va, "model_params": total, "va_param_share": va / total,
                     "backbone_gflops_one_image": single / 1e9, "va_gflops": va_flops / 1e9,
                     "va_flops_vs_one_image": va_flops / single})
    return rows


def _flops(module, x):
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        return FlopCountAnalysis(module, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()


class _SingleImage(torch.nn.Module):
    """The backbone's per-image stage alone (ResNet + FPN on one 2.5D image), for FLOP counting."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.extract_features(x)


def _train_worker(args, bag, shared, context_grad, root, queue):
    """One training variant in a fresh process (its peak memory is its own): the result goes to ``queue``."""
    os.environ["VA_DATASETS"] = root
    cli.setup_cli(args.threads, log_threads=False)
    cfg = phantom_config(args, bag, [
        "SOLVER.IMS_PER_BATCH", TRAIN_BATCH, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.SHARED_BAG_TARGETS", shared,
        "MODEL.VA.CONTEXT_GRAD", context_grad, "OUTPUT_DIR", os.path.join(root, f"out{bag}_{shared}_{context_grad}"),
        "SOLVER.MAX_ITER", 1000, "TEST.EVAL_PERIOD", 0])
    queue.put(timed_training(cfg, warmup_iters=2, timed_iters=args.train_iters))


def in_fresh_process(worker, what, *worker_args):
    """``worker(*worker_args, queue)`` in a fresh (spawned) process, whose peak memory is its own: what it put in
    ``queue``. ``what`` names it in the error raised when the process fails."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(*worker_args, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{what} failed (exit code {proc.exitcode}); see its traceback above")
    return queue.get(timeout=10)


def bench_training(args, root):
    rows = []
    # name, bag size, DATALOADER.SHARED_BAG_TARGETS, MODEL.VA.CONTEXT_GRAD
    variants = (("baseline", 1, 1, True), ("VA N=3", 3, 1, True), ("VA N=3 no context grad", 3, 1, False),
                ("VA N=9", 9, 1, True), ("VA N=9 no context grad", 9, 1, False),
                (f"VA N=3 shared G={TRAIN_BATCH}", 3, TRAIN_BATCH, True))
    for name, bag, shared, context_grad in variants:
        result = in_fresh_process(_train_worker, f"training benchmark of {name}", args, bag, shared, context_grad, root)
        rows.append({"variant": name, **result})
    for row in rows:
        row["time_x_baseline"] = row["s_per_iter"] / rows[0]["s_per_iter"]
        row["memory_x_baseline"] = row["peak_memory_mb"] / rows[0]["peak_memory_mb"]
    return rows


def _saved_bytes(fn):
    """Bytes autograd keeps for backward while ``fn()`` runs (distinct storages of the saved tensors), and its result.

    This is the activation memory of training, measured without a GPU and independent of the allocator.
    """
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


def bench_activation_memory(args):
    """Activation memory of the LiTS R50 VA-FPN backbone (bottom-up, FPN, VA on P2-P6) per target in training, at
    ``--memory-size`` px, float32, for bags of 1, 3 and 9, with and without context gradients."""
    from detectron2.modeling import build_backbone

    size = args.memory_size
    rows = []
    for bag, context_grad in ((1, True), (3, True), (3, False), (9, True), (9, False)):
        cfg = variant_config(LITS_VA, "cpu", bag, size, ["MODEL.WEIGHTS", "", "MODEL.VA.CONTEXT_GRAD", context_grad])
        torch.manual_seed(0)
        backbone = build_backbone(cfg).train()
        x = torch.randn(1, 3 * bag, size, size)
        saved, _ = _saved_bytes(lambda net=backbone: net(x))
        name = "baseline" if bag == 1 else f"VA bag {bag}" + ("" if context_grad else ", no context grad")
        rows.append({"variant": name, "size_px": size, "activation_gb_per_target": saved / 2**30})
        del backbone
    for row in rows:
        row["x_baseline"] = row["activation_gb_per_target"] / rows[0]["activation_gb_per_target"]
    return rows


def bench_loader(args, root):
    """Bags per second of ``make_bag_array`` (the mapper's bag) from a float16 cache memmap at 512 x 512, N = 3, one
    core (the best of ``--repeats`` passes of 200 bags)."""
    from volumetric_attention.data.bag import make_bag_array

    path = os.path.join(root, "bench_volume.npy")
    np.save(path, np.random.default_rng(0).random((60, 512, 512), dtype=np.float32).astype(np.float16))
    volume = np.load(path, mmap_mode="r")
    n = 200

    def bags():
        for i in range(n):
            make_bag_array(volume, i % 60, 3)

    seconds = best_of([bags], args.repeats, "cpu")[0]
    return {"bags_per_s": n / seconds, "bag_size": 3, "slice_size": 512}


def bench_deeplesion_cache(args, root, key_slices_per_interval=2):
    """The DeepLesion slice store at 512 x 512: bytes per key slice against the PNGs', and bags per second (N = 3,
    one core, the best of ``--repeats`` passes) of the loader reading it.

    A folder in DeepLesion's layout is generated: for each common slice interval (1, 1.25, 2.5, 5 mm), series whose
    ``Slice_range`` spans +-30 mm around one key slice (as DeepLesion ships them), CT-like 16-bit PNGs from a
    512 x 512 phantom (its noise makes them compress like real CT). Prepared with the DeepLesion configs' settings
    (2 mm, 4 context slices: a bag of 3).
    """
    import cv2

    from volumetric_attention.data.bag import make_bag_array
    from volumetric_attention.data.cache import load_case
    from volumetric_attention.data.deeplesion import prepare_deeplesion
    from volumetric_attention.data.phantoms import make_phantom

    cv2.setNumThreads(1)
    src, cache = os.path.join(root, "DeepLesion"), os.path.join(root, "cache", "deeplesion")
    hu = make_phantom(0, shape=(24, 512, 512))[0]
    pool = (np.round(hu).astype(np.int32) + 32768).clip(0, 65535).astype(np.uint16)
    rows, n = [], 0
    header = ("File_name,Patient_index,Study_index,Series_ID,Key_slice_index,Measurement_coordinates,Bounding_boxes,"
              "Lesion_diameters_Pixel_,Normalized_lesion_location,Coarse_lesion_type,Possibly_noisy,Slice_range,"
              "Spacing_mm_px_,Image_size,DICOM_windows,Patient_gender,Patient_age,Train_Val_Test")
    for interval in (1.0, 1.25, 2.5, 5.0):
        half = int(round(30.0 / interval))
        for _ in range(key_slices_per_interval):
            n += 1
            series = f"{n:06d}_01_01"
            os.makedirs(os.path.join(src, "Images_png", series))
            for k in range(1, 2 * half + 2):
                cv2.imwrite(os.path.join(src, "Images_png", series, f"{k:03d}.png"), pool[(n * 7 + k) % len(pool)])
            key = half + 1
            rows.append(f'{series}_{key:03d}.png,{n},1,1,{key},"1,2,3,4","200, 200, 240, 240","40, 20",'
                        f'"0.5,0.5,0.5",4,0,"1, {2 * half + 1}","0.7, 0.7, {interval}","512, 512","-175, 275",F,50,1')
    with open(os.path.join(src, "DL_info.csv"), "w") as f:
        f.write("\n".join([header] + rows) + "\n")
    context = 4
    with open(os.devnull, "w") as devnull:
        result = prepare_deeplesion(src, cache, (-1024.0, 3071.0), 2.0, context, stream=devnull)
    assert not result.failed, result.failed

    def folder_bytes(folder, suffix=""):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files
                   if f.endswith(suffix))

    cases = [load_case(os.path.join(cache, r.split(",")[0][:-4])) for r in rows]
    png_per_key = folder_bytes(os.path.join(src, "Images_png"), ".png") / len(cases)
    store_per_key = (folder_bytes(os.path.join(cache, "series")) + sum(folder_bytes(c.case_dir) for c in cases)) / len(
        cases)

    def bags():
        for c in cases:
            make_bag_array(c.image, context, 3)

    seconds = best_of([bags], args.repeats, "cpu")[0]
    return [{"storage": "slice store per series", "MB_per_key_slice": store_per_key / 2 ** 20,
             "x_png_size": store_per_key / png_per_key, "bags_per_s": len(cases) / seconds},
            {"storage": f"(PNGs of the folder: {len(cases)} key slices at 1, 1.25, 2.5, 5 mm)",
             "MB_per_key_slice": png_per_key / 2 ** 20, "x_png_size": 1.0, "bags_per_s": float("nan")}]


def bench_evaluator(args):
    """Seconds to score one 512 x 512 x 600 case (liver + lesions) with the LiTS metrics."""
    from scipy import ndimage

    from volumetric_attention.evaluation.lits_metrics import score_case

    rng = np.random.default_rng(0)
    shape = (600, 512, 512)
    gt = np.zeros(shape, np.uint8)
    gt[150:450, 100:400, 120:420] = 1
    seeds = np.zeros(shape, bool)
    seeds[tuple(rng.integers([160, 110, 130], [440, 390, 410], size=(30, 3)).T)] = True
    gt[ndimage.binary_dilation(seeds, iterations=4) & (gt == 1)] = 2
    pred = np.roll(gt, 2, axis=1)
    seconds, _ = timed(lambda: score_case(pred, gt, (0.8, 0.7, 0.7)), "cpu")
    return {"s_per_case": seconds, "shape": list(shape)}


def prepared_phantoms(source, cache, num_cases, seed, hu_window=(-200.0, 300.0), slice_spacing=1.5, **phantom_args):
    """Write ``num_cases`` phantoms (``write_phantom_dataset``'s ``phantom_args``: shape, profile) into ``source``
    and prepare them, quietly, into the loader's ``cache``."""
    from volumetric_attention.data.lits import prepare_lits
    from volumetric_attention.data.phantoms import write_phantom_dataset

    write_phantom_dataset(source, num_cases, seed=seed, **phantom_args)
    with open(os.devnull, "w") as devnull:
        prepare_lits(source, cache, hu_window, slice_spacing, stream=devnull)


def bench_evaluation(args, root):
    """Seconds per case of LiTS evaluation (inference + LiTSEvaluator), detectron2's per-slice path against
    case-level (TEST.CT.CASE_LEVEL), for the baseline and VA N = 3 and N = 9, on prepared phantom cases."""
    from volumetric_attention.data import VolumetricDatasetMapper
    from volumetric_attention.data.dataset_dicts import load_cached_dataset_dicts
    from volumetric_attention.evaluation import LiTSEvaluator, inference_on_cases

    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset
    from detectron2.modeling import build_model

    source, cache = os.path.join(root, "eval_phantom"), os.path.join(root, "eval_cache")
    prepared_phantoms(source, cache, args.eval_cases, seed=1, shape=(args.slices, args.size, args.size))
    dicts = [d for split in ("train", "val") for d in load_cached_dataset_dicts(cache, split)]
    runs = []
    for name, bag in (("baseline", 1), ("VA N=3", 3), ("VA N=9", 9)):
        cfg = phantom_config(args, bag)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        mapper = VolumetricDatasetMapper(cfg, is_train=False)
        evaluator = LiTSEvaluator("phantom_val", distributed=False)

        def per_slice(model=model, mapper=mapper, evaluator=evaluator):
            loader = build_detection_test_loader(dataset=dicts, mapper=mapper, num_workers=0)
            return inference_on_dataset(model, loader, evaluator)

        def case_level(model=model, mapper=mapper, evaluator=evaluator, cfg=cfg):
            return inference_on_cases(model, dicts, evaluator, mapper, cfg.TEST.CT.CASE_BATCH_SIZE)

        runs += [(name, "per slice", per_slice), (name, "case level", case_level)]
    best = best_of([run for _, _, run in runs], args.repeats, args.device)
    num_cases = len({d["case_dir"] for d in dicts})
    rows = [{"variant": name, "path": path, "s_per_case": t / num_cases, "slices_per_case": len(dicts) / num_cases}
            for (name, path, _), t in zip(runs, best)]
    base = rows[0]["s_per_case"]  # the baseline, per slice
    for row in rows:
        row["x_baseline"] = row["s_per_case"] / base
    return rows


def bench_phantoms(args):
    """Seconds to make one phantom (``make_phantom``) of each profile at its default size, over seeds 0 and 1 (the
    best of ``--repeats`` passes)."""
    from volumetric_attention.data.phantoms import PROFILES, make_phantom

    seeds = (0, 1)
    profiles = sorted(PROFILES)
    shapes = {}

    def make(profile):
        shapes[profile] = [make_phantom(seed, profile=profile)[0].shape for seed in seeds]

    best = best_of([lambda p=p: make(p) for p in profiles], args.repeats, "cpu")
    return [{"profile": p, "shapes": " ".join("x".join(map(str, s)) for s in shapes[p]),
             "s_per_phantom": t / len(seeds)} for p, t in zip(profiles, best)]


# study_rows: the rows of the small-lesion and pretrained studies (tools/zcontext_study.sh, tools/pretrained_study.sh):
# name -> (config, overrides); va_context_no_grad is what a user with a bag of 9 at 1024 px can afford
_ROW = os.path.join(CONFIGS, "Phantom", "zcontext_liver_semantic_R_18_FPN_GN_{}.yaml").format
STUDY_ROWS = {
    "baseline": (_ROW("baseline"), []),
    "early_fusion": (_ROW("early_fusion"), []),
    "threedce": (_ROW("3dce_bag3"), []),
    "va": (_ROW("va_bag3"), []),
    "va_context_features": (_ROW("va_context_bag3"), []),
    "va_context_no_grad": (_ROW("va_context_bag3"), ["MODEL.VA.CONTEXT_GRAD", "False"]),
}


def _study_row_worker(args, row, root, queue):
    """One study row's training iterations in a fresh process: the result goes to ``queue``."""
    from volumetric_attention.utils.cli import load_config

    os.environ["VA_DATASETS"] = root
    cli.setup_cli(args.threads, log_threads=False)
    config_file, opts = STUDY_ROWS[row]
    cfg = load_config(config_file, opts + ["MODEL.DEVICE", args.device, "OUTPUT_DIR", os.path.join(root, "out")])
    queue.put(timed_training(cfg, warmup_iters=3, timed_iters=args.train_iters))


def bench_study_rows(args, root):
    from volumetric_attention.utils.cli import load_config

    cfg = load_config(STUDY_ROWS["baseline"][0], [])
    prepared_phantoms(os.path.join(root, "phantom"), os.path.join(root, "cache", "phantom"), 4, seed=0,
                      hu_window=cfg.INPUT.CT.HU_WINDOW, slice_spacing=cfg.INPUT.CT.SLICE_SPACING,
                      profile="zcontext_small")
    rows = []
    for name in STUDY_ROWS:
        result = in_fresh_process(_study_row_worker, f"study_rows benchmark of {name}", args, name, root)
        rows.append({"row": name, "s_per_iter": result["s_per_iter_with_data"],
                     "peak_memory_mb": result["peak_memory_mb"]})
    early_fusion = next(row["s_per_iter"] for row in rows if row["row"] == "early_fusion")
    for row in rows:
        row["time_x_early_fusion"] = row["s_per_iter"] / early_fusion
    return rows


def bench_training_section(args, root):
    prepared_phantoms(os.path.join(root, "phantom"), os.path.join(root, "cache", "phantom"), 4, seed=0,
                      shape=(24, 128, 128))
    return bench_training(args, root)


def table(title, rows):
    rows = rows if isinstance(rows, list) else [rows]
    keys = list(rows[0])
    lines = [f"\n{title}", " | ".join(keys), " | ".join("---" for _ in keys)]
    for row in rows:
        lines.append(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    return "\n".join(lines)


# --skip / --only name: (key in the JSON file, title, function of (args, temporary folder))
BENCHMARKS = {
    "inference": ("inference", "Inference per slice", bench_inference),
    "cost": ("va_cost", "VA module cost", lambda args, root: bench_va_cost(args)),
    "training": ("training", "Training", bench_training_section),
    "memory": ("activation_memory", "Activation memory per target (LiTS R50 VA-FPN backbone)",
               lambda args, root: bench_activation_memory(args)),
    "loader": ("loader", "Data loader", bench_loader),
    "deeplesion_cache": ("deeplesion_cache", "DeepLesion slice store (512 x 512, bag of 3, one core)",
                         bench_deeplesion_cache),
    "evaluator": ("evaluator", "Evaluator", lambda args, root: bench_evaluator(args)),
    "evaluation": ("evaluation", "Evaluation per case", bench_evaluation),
    "phantoms": ("phantoms", "Phantom generation (one core)", lambda args, root: bench_phantoms(args)),
    "study_rows": ("study_rows", "Small-lesion study rows: training (batch 4, 128 px)", bench_study_rows),
}


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="benchmark.json", help="JSON file with every figure")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=160, help="slice size in pixels")
    parser.add_argument("--slices", type=int, default=24, help="slices of the inference volume")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant (the best is kept)")
    parser.add_argument("--train-iters", type=int, default=6, help="timed training iterations per model")
    parser.add_argument("--memory-size", type=int, default=512,
                        help="slice size of the activation-memory rows (the LiTS configs: 512; 1024 needs ~4x the RAM)")
    parser.add_argument("--eval-cases", type=int, default=2, help="phantom cases of the evaluation benchmark")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--skip", nargs="*", default=[], choices=list(BENCHMARKS), help="sections not to run")
    which.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="the sections to run")
    add_threads_argument(parser)
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    args.threads = cli.setup_cli(args.threads, log_threads=False)
    load = machine_load()
    busy = "n/a" if load["busy_cpus"] is None else f"{load['busy_cpus']:.1f}"
    print(f"torch threads: {args.threads}; machine: {load['cpus']} CPUs, load average {load['loadavg_1min'] or 0:.2f}, "
          f"{busy} CPUs busy with other processes", flush=True)
    contention = cpu_contention_warning(args.threads, load)
    if contention:
        print(f"warning: {contention}", file=sys.stderr, flush=True)

    results = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads,
                           "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                           "torch": torch.__version__, "load": load, "cpu_contention": contention},
               "settings": vars(args)}
    names = args.only or [name for name in BENCHMARKS if name not in args.skip]
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            key, title, bench = BENCHMARKS[name]
            results[key] = bench(args, root)
            print(table(title, results[key]), flush=True)
    with atomic_open(args.output, "w") as (f, _):
        json.dump(results, f, indent=2)
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
