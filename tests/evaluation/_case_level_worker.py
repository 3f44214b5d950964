"""Tiny phantom setup of the case-level evaluation tests, and their distributed worker (imported by spawned
processes)."""
import json
import os

import _tiny

PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "VolumetricAttention")
CONFIGS = os.path.join(PROJECT, "configs", "Phantom")
MASK_RCNN_VA = os.path.join(CONFIGS, "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")
SEMANTIC_VA = os.path.join(CONFIGS, "semantic_R_18_FPN_GN_va_bag3.yaml")
DATASET = "phantom_train"  # 3 cases
# CPU-sized; score thresholds 0 so that a random model paints liver and lesion everywhere, false positives included;
# gates that depend on the bag, so that case-level (cached) and per-slice outputs could differ
TINY = _tiny.MODEL + _tiny.INPUT + _tiny.KEEP_EVERY_DETECTION + _tiny.VARYING_GATES + [
    "INPUT.CT.SLICE_SPACING", 2.0, "DATALOADER.NUM_WORKERS", 0, "DATASETS.TEST", (DATASET,),
]


def tiny_cfg(config, weights="", extra=()):
    from volumetric_attention import get_va_cfg

    return get_va_cfg(config, TINY + ["MODEL.WEIGHTS", weights] + list(extra))


def run_case_level_test(config, weights, output_dir, result_path):
    """Worker: ``VATrainer.test`` with case-level evaluation over gloo; the main process writes the results."""
    from volumetric_attention.engine import VATrainer
    from volumetric_attention.utils.tensor_checkpoint import load_weights_strict

    from detectron2.utils import comm

    cfg = tiny_cfg(config, weights, ["OUTPUT_DIR", output_dir])
    model = VATrainer.build_model(cfg)
    load_weights_strict(model, weights)
    results = VATrainer.test(cfg, model)
    if comm.is_main_process():
        with open(result_path, "w") as f:
            json.dump({"results": results, "world": comm.get_world_size()}, f)
    else:
        assert results == {}, results
