"""Timing and memory for tools/benchmark.py and tools/gpu_check.py: the config of one model variant, timed calls on
a synchronised device, peak memory, and the timed training loop, stepped as detectron2's trainers step."""
import resource
import time
from typing import Callable, List, Sequence

import numpy as np
import torch

__all__ = ["variant_config", "sync", "timed", "best_of", "reset_peak_memory", "peak_memory_mb", "timed_training"]


def variant_config(config_file: str, device: str, bag_size: int, size: int, extra: Sequence = ()):
    """``config_file`` on ``device`` with VA on for ``bag_size`` > 1 (the 2.5D baseline for 1) and square
    ``size``-pixel train and test images, then ``extra`` (KEY VALUE pairs)."""
    from volumetric_attention.utils.cli import load_config

    return load_config(config_file, [
        "MODEL.DEVICE", device, "MODEL.VA.ENABLED", bag_size > 1, "MODEL.VA.BAG_SIZE", max(bag_size, 1),
        "INPUT.MIN_SIZE_TRAIN", (size,), "INPUT.MAX_SIZE_TRAIN", size,
        "INPUT.MIN_SIZE_TEST", size, "INPUT.MAX_SIZE_TEST", size, *extra,
    ])


def sync(device: str):
    """Wait for the device's queued work (CUDA runs asynchronously), so that a clock reading covers it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable, device: str):
    """(seconds, result) of ``fn()``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def best_of(fns: Sequence[Callable], repeats: int, device: str) -> List[float]:
    """The fastest of ``repeats`` timed calls of each of ``fns``, called round-robin so that each sees the same
    machine state."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], timed(fn, device)[0])
    return best


def reset_peak_memory(device: str):
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    """``torch.cuda.max_memory_allocated`` since :func:`reset_peak_memory`; on the CPU the process's peak RSS so far
    (which no reset lowers: it means most in a fresh process)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def timed_training(cfg, warmup_iters: int, timed_iters: int, amp: bool = False) -> dict:
    """Train ``cfg``'s model (``VATrainer``'s model, optimizer and loader) for ``warmup_iters`` untimed iterations
    (allocator growth, cuDNN autotuning) and ``timed_iters`` timed ones, stepped as detectron2's ``AMPTrainer``
    steps (float16 autocast and a gradient scaler with ``amp`` on CUDA; bfloat16 autocast with ``amp`` on the CPU).

    Returns:
        ``{"s_per_iter"`` (median of the steps), ``"s_per_iter_with_data"`` (median of the steps with the batch's
        loading, as detectron2's trainers time an iteration), ``"peak_memory_mb"``,
        ``"backbone_images_per_target"`` (mean of what the VA-FPN records, None without it)``}``.
    Raises:
        FloatingPointError: a loss is not finite (detectron2's trainers stop there too).
    """
    from volumetric_attention.engine import VATrainer

    from detectron2.utils.events import EventStorage

    device = cfg.MODEL.DEVICE
    cuda = device.startswith("cuda")
    model = VATrainer.build_model(cfg).train()
    optimizer = VATrainer.build_optimizer(cfg, model)
    loader = iter(VATrainer.build_train_loader(cfg))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and cuda)
    dtype = torch.float16 if cuda else torch.bfloat16

    def step(batch, i):
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=dtype, enabled=amp):
            losses = sum(model(batch).values())
        if not torch.isfinite(losses):
            raise FloatingPointError(f"the loss is {float(losses)} at iteration {i}")
        optimizer.zero_grad()
        scaler.scale(losses).backward()
        scaler.step(optimizer)
        scaler.update()

    reset_peak_memory(device)
    times, times_with_data, images = [], [], []
    with EventStorage(0) as storage:  # detectron2's losses and the VA-FPN log to the current EventStorage
        for i in range(warmup_iters + timed_iters):
            load_seconds, batch = timed(lambda: next(loader), device)
            seconds, _ = timed(lambda: step(batch, i), device)
            if i >= warmup_iters:
                times.append(seconds)
                times_with_data.append(load_seconds + seconds)
                if "va/backbone_images_per_target" in storage.histories():
                    # distinct 2.5D images through the backbone / targets, recorded by the VA-FPN in training
                    images.append(storage.history("va/backbone_images_per_target").latest())
    return {"s_per_iter": float(np.median(times)), "s_per_iter_with_data": float(np.median(times_with_data)),
            "peak_memory_mb": peak_memory_mb(device),
            "backbone_images_per_target": float(np.mean(images)) if images else None}
