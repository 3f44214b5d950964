"""The shared loop over a case: every target once, the cache's memory bound, and cached = naive outputs (features,
scores, boxes, labels), with a shifted bag as the negative control."""
import numpy as np
import pytest
import torch
from _bag_checks import (
    ShiftedContextLoop,
    assert_all_features_differ,
    assert_outputs_differ,
    assert_same_features,
    assert_same_outputs,
    run_case,
)

from volumetric_attention.data.bag import bag_slice_indices
from volumetric_attention.inference.case_loop import CaseLoop, target_batches
from volumetric_attention.inference.slice_labels import output_to_label_slice

from detectron2.data import transforms as T
from detectron2.modeling import build_model

from .conftest import tiny_cfg


def test_target_batches_pass_over_each_residue_alternately():
    assert target_batches(range(8), 2) == [[0, 3], [6], [7, 4], [1], [2, 5]]
    assert target_batches([9, 2, 2, 5], 4) == [[9], [2, 5]]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        target_batches(range(3), 0)


def _distinct_images(num_slices, bag_size):
    idx = [bag_slice_indices(z, num_slices, bag_size).reshape(-1, 3) for z in range(num_slices)]
    return len({tuple(t) for i in idx for t in i.tolist()})


def _most_live_images(num_slices, bag_size, batch_size):
    """The most images needed both by or before a batch and by or after it, over the loop's batches: what a cache
    that keeps each image from its first use to its last holds at its fullest."""
    batches = target_batches(range(num_slices), batch_size)
    uses = {}
    for i, batch in enumerate(batches):
        for z in batch:
            for t in bag_slice_indices(z, num_slices, bag_size).reshape(-1, 3).tolist():
                uses.setdefault(tuple(t), []).append(i)
    return max(sum(min(u) <= i <= max(u) for u in uses.values()) for i in range(len(batches)))


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(3)
    return rng.random((13, 40, 44), dtype=np.float32).astype(np.float16)  # a cache's float16 memmap, in [0, 1]


@pytest.mark.parametrize("bag_size, batch_size", [(3, 1), (3, 4), (9, 2)])
def test_cache_holds_at_most_n_plus_b_plus_1_images_and_matches_naive(volume, bag_size, batch_size):
    torch.manual_seed(0)
    cfg = tiny_cfg(extra=["MODEL.VA.BAG_SIZE", bag_size, "MODEL.PIXEL_MEAN", [100.0] * 3])
    model = build_model(cfg).eval()
    resize = [T.ResizeShortestEdge([64, 64], 64)]
    cached = CaseLoop(model, bag_size, resize, batch_size=batch_size)
    naive = CaseLoop(model, bag_size, resize, batch_size=batch_size, use_feature_cache=False)
    shifted = ShiftedContextLoop(model, bag_size, resize, batch_size=batch_size, use_feature_cache=False)
    results = {name: run_case(loop, volume) for name, loop in
               (("cached", cached), ("naive", naive), ("shifted", shifted))}
    for name in ("cached", "naive"):
        assert sorted(results[name]) == list(range(len(volume)))
        for _, o in results[name].values():
            assert o["instances"].image_size == volume.shape[1:]

    def features(name):
        return [results[name][z][0] for z in range(len(volume))]

    def outputs(name):
        return [results[name][z][1] for z in range(len(volume))]

    # what the heads read, their scores and boxes, and the label maps agree
    assert_same_features(features("cached"), features("naive"))
    assert_same_outputs(outputs("cached"), outputs("naive"))
    labels = {name: np.stack([output_to_label_slice(results[name][z][1], 0.0, True, *volume.shape[1:])
                              for z in range(len(volume))]) for name in ("cached", "naive")}
    np.testing.assert_array_equal(labels["cached"], labels["naive"])
    assert labels["cached"].any()
    # negative control: the same comparison sees context images one slice off
    assert_all_features_differ(features("shifted"), features("naive"))
    assert_outputs_differ(outputs("shifted"), outputs("naive"))

    # a batch's N + B - 1 images and the two images clamped at the volume's ends, kept from their first use to their
    # last; no more than that
    assert cached.peak_cached_images <= bag_size + batch_size + 1
    assert cached.peak_cached_images == _most_live_images(len(volume), bag_size, batch_size)
    # each distinct image exactly once
    assert cached.backbone_images == _distinct_images(len(volume), bag_size)
    assert naive.backbone_images == len(volume) * bag_size


def test_a_subset_of_targets_is_predicted_alone(volume):
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    loop = CaseLoop(model, 3, [T.ResizeShortestEdge([64, 64], 64)], batch_size=2)
    full = {z: o["instances"].scores for t, out in loop.run(volume) for z, o in zip(t, out)}
    part = {z: o["instances"].scores for t, out in loop.run(volume, targets=[11, 2, 5]) for z, o in zip(t, out)}
    assert sorted(part) == [2, 5, 11]
    for z in part:
        torch.testing.assert_close(part[z], full[z])
