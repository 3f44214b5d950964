#!/usr/bin/env python
"""VA at the paper's scale on one CUDA device: AMP training, speed and memory per variant, deformable convs, inference.

    python tools/gpu_check.py [--output-dir output/gpu_check] [--size 512] [--batch 8] [--iters 30]
    python tools/gpu_check.py --device cpu --tiny [--threads N]   # the same steps, CPU-sized (the tests run this)

On generated phantoms (no download), in this order, within about 6 minutes on one GPU:

1. **Speed and memory.** Seconds per training iteration and peak memory (``torch.cuda.max_memory_allocated``; on
   the CPU the process's peak RSS so far, so only the first rows mean much there) of the LiTS R50 config (from
   scratch) at ``--size`` px and ``--batch`` targets per iteration: the 2.5D baseline, VA bag 3 and VA bag 9, each
   with and without AMP, VA also with ``MODEL.VA.CONTEXT_GRAD`` False (``--tiny``: bag 9 only in step 2). A variant
   that does not fit is reported as out of memory, not as a failure.
2. **AMP training.** ``LiTS/mask_rcnn_R_50_FPN_va_bag9.yaml`` trained for ``--iters`` iterations through the
   project's trainer with ``SOLVER.AMP.ENABLED`` (detectron2's AMPTrainer, float16); every loss must be finite
   (detectron2 stops on a non-finite one). If bag 9 with context gradients does not fit, it trains with
   ``CONTEXT_GRAD`` False and says so. AMPTrainer needs CUDA: on the CPU this step trains without AMP.
3. **Deformable convs.** The project's ``DeformConv`` forward and backward on the device against the CPU.
4. **Cached volume inference.** ``VolumePredictor`` with the per-volume feature cache, slices per second.

Writes ``gpu_check.json`` and ``gpu_check.md`` (a table) to ``--output-dir`` and exits non-zero when a check fails.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from _timing import timed, timed_training, variant_config

# first: the package quiets the known third-party notices that importing detectron2 prints (and registers backbones)
from volumetric_attention.utils import cli
from volumetric_attention.utils.atomic_io import atomic_open
from volumetric_attention.utils.threads import add_threads_argument

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LITS_VA = os.path.join(ROOT, "projects", "VolumetricAttention", "configs", "LiTS", "mask_rcnn_R_50_FPN_va_bag9.yaml")
# --tiny: the CPU-sized model of the test suite (ResNet-18, GN, narrow FPN and heads, small RPN samples)
TINY_OPTS = [
    "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.NORM", "GN",
    "MODEL.FPN.NORM", "GN", "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.BACKBONE.FREEZE_AT", 0,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 100, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 100, "MODEL.RPN.POST_NMS_TOPK_TEST", 50, "TEST.DETECTIONS_PER_IMAGE", 10,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 64, "MODEL.ROI_MASK_HEAD.CONV_DIM", 32, "MODEL.VA.REDUCTION", 4,
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized model, images and schedule (for the tests)")
    parser.add_argument("--output-dir", default="output/gpu_check")
    parser.add_argument("--size", type=int, default=512, help="slice size in pixels (the LiTS configs: 512)")
    parser.add_argument("--batch", type=int, default=8, help="targets per iteration (the LiTS configs: 8)")
    parser.add_argument("--iters", type=int, default=30, help="iterations of the AMP training check")
    parser.add_argument("--timed-iters", type=int, default=5, help="timed iterations per speed/memory variant")
    parser.add_argument("--warmup-iters", type=int, default=2, help="untimed iterations before them")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.batch, args.iters, args.timed_iters, args.warmup_iters = 64, 2, 2, 1, 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu --tiny for the CPU run")
    return args


def make_config(args, root, bag, *, amp=False, context_grad=True, extra=()):
    """The LiTS VA config from scratch, CPU-sized with ``--tiny``, training on the phantoms of :func:`make_data`."""
    return variant_config(LITS_VA, args.device, bag, args.size, [
        "MODEL.WEIGHTS", "", "MODEL.VA.CONTEXT_GRAD", context_grad, "SOLVER.AMP.ENABLED", amp,
        "SOLVER.IMS_PER_BATCH", args.batch, "DATASETS.TRAIN", ("phantom_train",), "DATASETS.TEST", (),
        "TEST.EVAL_PERIOD", 0, "DATALOADER.NUM_WORKERS", 0 if args.tiny else 4,
        "OUTPUT_DIR", os.path.join(root, "train"), "SOLVER.CHECKPOINT_PERIOD", 10**6, "SEED", 0,
        *(TINY_OPTS if args.tiny else []), *extra,
    ])


def make_data(args, root):
    """Phantoms in the LiTS layout at --size px, prepared into the cache that ``phantom_train`` reads."""
    from volumetric_attention.data.lits import prepare_lits
    from volumetric_attention.data.phantoms import write_phantom_dataset

    cases, slices = (4, 16) if args.tiny else (4, 48)
    write_phantom_dataset(os.path.join(root, "phantom"), cases, seed=0, shape=(slices, args.size, args.size))
    with open(os.devnull, "w") as devnull:
        prepare_lits(os.path.join(root, "phantom"), os.path.join(root, "cache", "phantom"), (-200.0, 300.0), 1.5,
                     workers=1 if args.tiny else 4, stream=devnull)


def _is_oom(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def measure_training(args, root, name, bag, amp, context_grad):
    """Median seconds per iteration and peak memory of one variant, stepped as detectron2's AMPTrainer steps."""
    cfg = make_config(args, root, bag, amp=amp, context_grad=context_grad)
    row = {"variant": name, "bag": bag, "amp": amp, "context_grad": context_grad}
    try:
        result = timed_training(cfg, args.warmup_iters, args.timed_iters, amp=amp)
        row.update(s_per_iter=result["s_per_iter"], peak_memory_mb=result["peak_memory_mb"], status="ok")
    except FloatingPointError as e:
        raise FloatingPointError(f"{name}: {e}") from None
    except RuntimeError as e:
        if not _is_oom(e):
            raise
        row.update(s_per_iter=None, peak_memory_mb=None, status="out of memory")
    finally:
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return row


def speed_and_memory(args, root):
    variants = [("baseline", 1, False, True), ("baseline + AMP", 1, True, True)]
    for bag in (3, 9):
        for amp in (False, True):
            for context_grad in (True, False):
                name = f"VA bag {bag}" + (" + AMP" if amp else "") + ("" if context_grad else ", no context grad")
                variants.append((name, bag, amp, context_grad))
    if args.tiny:  # the same code path in the tests, without the 9-image bags' cost
        variants = [v for v in variants if v[1] < 9]
    rows = []
    for variant in variants:
        rows.append(measure_training(args, root, *variant))
        print(format_row(rows[-1]), flush=True)
    base = {r["amp"]: r["s_per_iter"] for r in rows if r["bag"] == 1}
    for row in rows:
        row["time_x_baseline"] = (row["s_per_iter"] / base[row["amp"]]
                                  if row["s_per_iter"] is not None and base.get(row["amp"]) else None)
    return rows


def amp_training(args, root):
    """The LiTS VA bag 9 config through VATrainer with SOLVER.AMP.ENABLED (AMPTrainer); finite losses throughout."""
    from volumetric_attention.engine import VATrainer

    cuda = args.device.startswith("cuda")
    result = {"config": os.path.relpath(LITS_VA, ROOT), "iters": args.iters, "amp": cuda}
    for context_grad in (True, False):
        trainer = None
        cfg = make_config(args, root, 9, amp=cuda, context_grad=context_grad,
                          extra=["SOLVER.MAX_ITER", args.iters, "SOLVER.WARMUP_ITERS", max(1, args.iters // 3)])
        try:
            trainer = VATrainer(cfg)
            trainer.resume_or_load(resume=False)
            trainer.train()  # detectron2 raises FloatingPointError on a non-finite loss
        except RuntimeError as e:
            if not (_is_oom(e) and context_grad):
                raise
            trainer = None
            torch.cuda.empty_cache()
            continue
        losses = trainer.storage.history("total_loss").values()
        result.update(context_grad=context_grad, first_loss=losses[0][0], last_loss=losses[-1][0],
                      finite=all(np.isfinite(v) for v, _ in losses), status="ok")
        return result
    result.update(status="out of memory even without context gradients", finite=False)
    return result


def deformable_check(args):
    """DeformConv (modulated, 2 offset groups) forward and backward on the device against the CPU."""
    if not args.device.startswith("cuda"):
        return {"status": "skipped: the device is the CPU"}
    from volumetric_attention.modeling import DeformConv

    torch.manual_seed(0)
    conv = DeformConv(32, 32, 3, padding=1)
    x = torch.randn(2, 32, 40, 40)
    offset = torch.randn(2, 2 * 2 * 9, 40, 40) * 2
    mask = torch.rand(2, 2 * 9, 40, 40)
    results = {}
    for device in ("cpu", args.device):
        conv_d = conv.to(device)
        conv_d.zero_grad()
        inputs = [t.to(device).requires_grad_(True) for t in (x, offset, mask)]
        out = conv_d(*inputs)
        out.square().sum().backward()
        results[device] = [out.detach().cpu()] + [t.grad.cpu() for t in inputs] + [conv_d.weight.grad.cpu()]
    errors = {name: float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
              for name, a, b in zip(["output", "grad_input", "grad_offset", "grad_mask", "grad_weight"],
                                    results[args.device], results["cpu"])}
    return {"max_relative_error": errors, "status": "ok" if max(errors.values()) < 1e-3 else "mismatch"}


def volume_inference(args, root):
    """Slices per second of cached volume inference (VolumePredictor), the baseline and VA bag 9."""
    from volumetric_attention.engine import VACheckpointer
    from volumetric_attention.inference import VolumePredictor

    from detectron2.modeling import build_model

    image = np.random.default_rng(0).random((12 if args.tiny else 96, args.size, args.size), dtype=np.float32)
    rows = []
    for name, bag in (("baseline", 1), ("VA bag 9, feature cache", 9)):
        cfg = make_config(args, root, bag)
        path = os.path.join(root, f"bag{bag}.pth")
        VACheckpointer(build_model(cfg), root).save(f"bag{bag}")
        predictor = VolumePredictor(cfg, path, batch_size=args.batch, progress=False)
        predictor.predict_cache_grid(image[:8])  # warm-up
        seconds, _ = timed(lambda p=predictor: p.predict_cache_grid(image), args.device)
        rows.append({"variant": name, "slices_per_s": len(image) / seconds})
        del predictor
    for row in rows:
        row["x_baseline_time"] = rows[0]["slices_per_s"] / row["slices_per_s"]
    return rows


def format_row(row):
    return " | ".join("n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values())


def markdown(results):
    lines = [f"# VA GPU check: {results['device']}", ""]
    for title, key in (("Training speed and memory", "speed_and_memory"), ("Cached volume inference", "inference")):
        rows = results.get(key) or []
        if rows:
            lines += [f"## {title}", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + format_row(r) + " |" for r in rows]
            lines.append("")
    for title, key in (("AMP training", "amp_training"), ("Deformable conv, device vs CPU", "deformable")):
        lines += [f"## {title}", "```", json.dumps(results.get(key), indent=1), "```", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cli.setup_cli(args.threads)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    results = {"device": device_name, "torch": torch.__version__, "settings": vars(args)}
    start = time.perf_counter()
    failed = []
    with tempfile.TemporaryDirectory() as root:
        os.environ["VA_DATASETS"] = root  # read when phantom_train is loaded
        make_data(args, root)
        steps = [("speed_and_memory", lambda: speed_and_memory(args, root)),
                 ("amp_training", lambda: amp_training(args, root)),
                 ("deformable", lambda: deformable_check(args)),
                 ("inference", lambda: volume_inference(args, root))]
        for key, step in steps:
            print(f"== {key}", flush=True)
            try:
                results[key] = step()
            except Exception as e:  # one failed check must not hide the others' figures
                results[key] = {"status": f"failed: {type(e).__name__}: {' '.join(str(e).split())}"}
            status = results[key].get("status", "ok") if isinstance(results[key], dict) else "ok"
            if status not in ("ok",) and not status.startswith("skipped"):
                failed.append(f"{key}: {status}")
    results["seconds"] = time.perf_counter() - start
    results["failed"] = failed
    os.makedirs(args.output_dir, exist_ok=True)
    with atomic_open(os.path.join(args.output_dir, "gpu_check.json"), "w") as (f, _):
        json.dump(results, f, indent=2)
    with atomic_open(os.path.join(args.output_dir, "gpu_check.md"), "w") as (f, _):
        f.write(markdown(results))
    print(markdown(results))
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
