"""A tiny fake LiTS cache (3 cases, cache z spacing twice the original) and fake model outputs for the evaluator
tests."""
import numpy as np
import torch

from volumetric_attention.data.cache import write_case
from volumetric_attention.data.preprocessing import SliceResampler

from detectron2.structures import Boxes, Instances

H = W = 32
Z0, SPACING_Z0, SPACING_ZC = 9, 1.0, 2.0
SPACING_YX = (0.8, 0.8)


def _cache_labels():
    """case_id -> uint8 (Zc, H, W) labels on the cache grid (5 slices)."""
    zc = SliceResampler(Z0, SPACING_Z0, SPACING_ZC).num_cache_slices
    liver = np.zeros((zc, H, W), np.uint8)
    liver[1:4, 4:28, 4:24] = 1
    c1 = liver.copy()
    c1[1:3, 8:14, 8:14] = 2
    c2 = liver.copy()
    c2[2:4, 16:22, 10:16] = 2
    return {"c1": c1, "c2": c2, "c3": liver.copy()}


def make_fake_cache(root):
    """Write the cases; returns {case_id: (case_dir, cache labels (Zc, H, W), original labels (Z0, H, W))}."""
    resampler = SliceResampler(Z0, SPACING_Z0, SPACING_ZC)
    cases = {}
    for case_id, labels in _cache_labels().items():
        original = resampler.to_original(labels)
        meta = {"resampler": resampler.to_dict(), "spacing": [SPACING_ZC, *SPACING_YX],
                "num_slices": int(labels.shape[0])}
        arrays = {"image": np.zeros(labels.shape, np.float16), "label": labels, "label_original": original}
        case_dir = write_case(str(root), case_id, arrays, meta)
        cases[case_id] = (case_dir, labels, original)
    return cases


def predicted_labels(cases, kind):
    """Prediction on the cache grid. "perfect": the ground truth. "imperfect": c2's lesion missed and a lesion
    outside the liver in c3 (removed by the lesion-in-liver AND)."""
    pred = {c: lab.copy() for c, (_, lab, _) in cases.items()}
    if kind == "imperfect":
        pred["c2"][pred["c2"] == 2] = 1
        pred["c3"][2, 26:30, 26:30] = 2
    return pred


def _instances(label_slice):
    """Mask R-CNN-like Instances of a label slice: one liver instance (liver incl. lesions, class 0), one lesion
    instance (class 1), and a low-score lesion everywhere that the score threshold must drop."""
    masks, classes, scores = [], [], []
    liver = label_slice == 1
    lesion = label_slice == 2
    # the liver instance covers its lesions, except lesions outside the liver region (the AND must remove those)
    liver_full = liver | (lesion & _liver_region())
    if liver_full.any():
        masks.append(liver_full)
        classes.append(0)
        scores.append(0.95)
    if lesion.any():
        masks.append(lesion)
        classes.append(1)
        scores.append(0.9)
    masks.append(np.ones_like(liver))
    classes.append(1)
    scores.append(0.2)
    inst = Instances((H, W))
    inst.pred_masks = torch.from_numpy(np.stack(masks))
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_boxes = Boxes(torch.zeros(len(masks), 4))
    return inst


def _liver_region():
    region = np.zeros((H, W), bool)
    region[4:28, 4:24] = True
    return region


def _sem_seg(label_slice):
    logits = torch.full((3, H, W), -2.0)
    logits.scatter_(0, torch.from_numpy(label_slice.astype(np.int64))[None], 3.0)
    return logits


def inputs_outputs(cases, pred, output_kind="instances"):
    """Per-slice (input, output) pairs of all cases, in case/slice order."""
    pairs = []
    for case_id, (case_dir, labels, _) in cases.items():
        for z in range(labels.shape[0]):
            inp = {"case_id": case_id, "slice_index": z, "num_slices": labels.shape[0], "height": H, "width": W,
                   "case_dir": case_dir, "image_id": f"{case_id}/{z}", "file_name": case_dir}
            if output_kind == "instances":
                out = {"instances": _instances(pred[case_id][z])}
            else:
                out = {"sem_seg": _sem_seg(pred[case_id][z])}
            pairs.append((inp, out))
    return pairs


def run_split_evaluation(cache_root, output_dir, result_path):
    """Worker of the distributed test: rank r processes every other slice (so each case is split across ranks)."""
    import json

    from volumetric_attention.evaluation import LiTSEvaluator

    from detectron2.utils import comm

    cases = make_fake_cache_readonly(cache_root)
    pairs = inputs_outputs(cases, predicted_labels(cases, "imperfect"))
    rank, world = comm.get_rank(), comm.get_world_size()
    evaluator = LiTSEvaluator("fake_lits_dist", output_dir=output_dir, distributed=True)
    evaluator.reset()
    for inp, out in pairs[rank::world]:
        evaluator.process([inp], [out])
    results = evaluator.evaluate()
    if comm.is_main_process():
        with open(result_path, "w") as f:
            json.dump({"results": results, "world": world}, f)
    else:
        assert results == {}, results


def make_fake_cache_readonly(root):
    """The cases of an existing fake cache, read back with the cache loader."""
    import os

    from volumetric_attention.data.cache import load_case

    cases = {}
    for case_id in sorted(_cache_labels()):
        c = load_case(os.path.join(str(root), case_id))
        cases[case_id] = (c.case_dir, np.asarray(c.label), np.asarray(c.label_original))
    return cases
