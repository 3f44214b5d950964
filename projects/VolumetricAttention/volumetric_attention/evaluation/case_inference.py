"""Case-level inference for LiTS-style datasets: whole cases through the feature cache, into a ``DatasetEvaluator``.

detectron2's ``inference_on_dataset`` runs the model on one target slice at a time, so a VA model computes every 2.5D
image of every bag: N backbone passes per slice. :func:`inference_on_cases` runs each case's slices through
:class:`~volumetric_attention.inference.case_loop.CaseLoop`, the loop of the volume predictor, at about one backbone
pass per slice, and hands the evaluator exactly what ``inference_on_dataset`` would: the slice's dataset dict and the
model's output for it. The evaluator, its metrics, files and plots are unchanged.

Every slice with a dataset dict is predicted; for LiTS-style datasets that is every slice of a case, including those
outside the liver's z range, so false positives there count.

DeepLesion keeps detectron2's per-slice path: its targets are key slices, each cached with its own few context
slices, and the key slices of a study lie far apart, so no two targets share a 2.5D image and a per-case cache would
have nothing to reuse.

Distributed: the cases (never parts of one) are split across processes, balanced by slice count; each process feeds
its own evaluator, and the evaluator's ``evaluate`` gathers as it does after ``inference_on_dataset``.
"""
import datetime
import logging
import time
from collections import OrderedDict
from contextlib import ExitStack
from typing import Dict, List

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.evaluation import DatasetEvaluators, inference_context
from detectron2.utils import comm

from ..inference.case_loop import CaseLoop

__all__ = ["inference_on_cases", "split_cases"]

logger = logging.getLogger(__name__)


def split_cases(dataset_dicts: List[dict], num_parts: int) -> List[List[List[dict]]]:
    """Group dataset dicts by case (``case_dir``) and share the cases out among ``num_parts`` processes.

    Largest case first to the part with the fewest slices so far (the lowest index on a tie): deterministic, so that
    every process computes the same split without communicating.

    Returns:
        ``num_parts`` lists of cases, each case the list of its dicts in the order given.
    """
    cases: "OrderedDict[str, List[dict]]" = OrderedDict()
    for d in dataset_dicts:
        cases.setdefault(d["case_dir"], []).append(d)
    parts: List[List[List[dict]]] = [[] for _ in range(num_parts)]
    load = [0] * num_parts
    for case in sorted(cases.values(), key=len, reverse=True):  # stable: equal sizes keep their order
        i = min(range(num_parts), key=lambda p: (load[p], p))
        parts[i].append(case)
        load[i] += len(case)
    return parts


def inference_on_cases(model, dataset_dicts: List[dict], evaluator, mapper, batch_size: int = 1,
                       log_period: float = 5.0) -> Dict:
    """Run ``model`` over whole cases and evaluate, like detectron2's ``inference_on_dataset``.

    Args:
        model: a detectron2 meta-architecture, or its ``DistributedDataParallel`` wrapper (each process then runs the
            inner module on its own cases; nothing is synchronised during inference).
        dataset_dicts: LiTS-style dicts (``case_dir``, ``slice_index``, ``height``, ``width``, ...), as registered.
        evaluator: a ``DatasetEvaluator`` or a list of them; gets ``process(dicts, outputs)`` per batch of slices.
        mapper: the test-time :class:`~volumetric_attention.data.VolumetricDatasetMapper` of the per-slice path:
            its bag size, augmentations and cache checks are used, so both paths see the same pixels.
        batch_size: target slices per forward pass (B); the feature cache holds at most N + B + 1 images.
        log_period: seconds between progress lines (percent of cases and slices done, speed, ETA).
    Returns:
        what ``evaluator.evaluate()`` returns (``{}`` where it returns None, e.g. on non-main processes).
    """
    if isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(list(evaluator))
    world, rank = comm.get_world_size(), comm.get_rank()
    cases = split_cases(dataset_dicts, world)[rank]
    total_slices = sum(len(c) for c in cases)
    module = model.module if isinstance(model, DistributedDataParallel) else model
    loop = CaseLoop(module, mapper.bag_size, [mapper.augmentations], batch_size=batch_size)
    logger.info(f"Start case-level inference on {len(cases)} cases ({total_slices} of {len(dataset_dicts)} slices; "
                f"{world} process(es) share the cases)")
    evaluator.reset()
    start = last_log = time.perf_counter()
    done_slices = backbone_images = 0
    with ExitStack() as stack:
        if isinstance(module, torch.nn.Module):
            stack.enter_context(inference_context(module))
        stack.enter_context(torch.no_grad())
        for i, case_dicts in enumerate(cases):
            by_slice = {int(d["slice_index"]): d for d in case_dicts}
            image = mapper.open_case(case_dicts[0]["case_dir"]).image
            for targets, outputs in loop.run(image, sorted(by_slice)):
                evaluator.process([by_slice[z] for z in targets], outputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            done_slices += len(case_dicts)
            backbone_images += loop.backbone_images
            now = time.perf_counter()
            if now - last_log >= log_period or i + 1 == len(cases):
                last_log = now
                per_slice = (now - start) / done_slices
                eta = datetime.timedelta(seconds=int(per_slice * (total_slices - done_slices)))
                logger.info(f"Case-level inference: {i + 1}/{len(cases)} cases, {done_slices}/{total_slices} "
                            f"slices ({100.0 * done_slices / max(total_slices, 1):.0f}%), {per_slice:.4f} s/slice, "
                            f"ETA={eta}")
    total = time.perf_counter() - start
    logger.info(f"Total case-level inference time: {datetime.timedelta(seconds=total)} "
                f"({total / max(len(cases), 1):.4f} s / case, {total / max(total_slices, 1):.6f} s / slice, "
                f"{backbone_images / max(total_slices, 1):.2f} backbone images / slice, on {world} process(es))")
    results = evaluator.evaluate()
    return {} if results is None else results
