"""Slice groups (DATALOADER.SHARED_BAG_TARGETS): which dicts form a group, one augmentation per group."""
import numpy as np
import pytest
import torch

from volumetric_attention.data import SliceGroupMapper, VolumetricDatasetMapper, flatten_groups, make_slice_groups
from volumetric_attention.data.cache import make_settings, write_case
from volumetric_attention.data.instances import volume_instances

from detectron2.data import transforms as T
from detectron2.structures import BoxMode

N = 3


def _dicts(cases):
    """Dataset dicts of ``{case_id: slice indices}``, image ids in order."""
    out = []
    for case_id, slices in cases.items():
        for z in slices:
            out.append({"image_id": len(out), "case_id": case_id, "slice_index": z, "num_slices": max(slices) + 1})
    return out


def _key(group):
    return [(d["case_id"], d["slice_index"]) for d in group]


def test_groups_are_slices_of_one_case_three_apart():
    dicts = _dicts({"a": range(20), "b": range(30)})
    groups = make_slice_groups(dicts, dicts, 3)
    assert len(groups) == len(dicts)
    for kept, group in zip(dicts, groups):
        assert len(group) == 3
        assert {d["case_id"] for d in group} == {kept["case_id"]}
        z = [d["slice_index"] for d in group]
        assert z[1] - z[0] == 3 and z[2] - z[1] == 3
        assert kept in group
        if kept["slice_index"] + 6 <= kept["num_slices"] - 1:  # fits: the kept target starts its group
            assert group[0] is kept


def test_group_shifts_back_at_the_case_end_keeping_the_target():
    dicts = _dicts({"a": range(12)})
    by_z = {d["slice_index"]: d for d in dicts}
    groups = make_slice_groups(dicts, [by_z[5], by_z[9], by_z[10], by_z[11]], 3)
    assert [[d["slice_index"] for d in g] for g in groups] == [[5, 8, 11], [3, 6, 9], [4, 7, 10], [5, 8, 11]]


def test_short_cases_and_sparse_key_slices_give_shorter_groups():
    # a 5-slice case cannot hold 3 targets 3 apart; DeepLesion-like dicts hold only a few key slices
    dicts = _dicts({"short": range(5), "keys": [4, 7, 20]})
    kept = {(d["case_id"], d["slice_index"]): d for d in dicts}
    groups = make_slice_groups(dicts, [kept["short", 0], kept["short", 2], kept["short", 4],
                                       kept["keys", 4], kept["keys", 7], kept["keys", 20]], 3)
    assert [[d["slice_index"] for d in g] for g in groups] == [[0, 3], [2], [1, 4], [4, 7], [7], [20]]


def test_every_kept_dict_gives_exactly_one_group_and_members_come_from_all_dicts():
    dicts = _dicts({"a": range(15), "b": range(9)})
    kept = dicts[::4]  # a subset of the targets
    groups = make_slice_groups(dicts, kept, 2)
    assert len(groups) == len(kept)
    for k, g in zip(kept, groups):
        assert sum(d is k for d in g) == 1
    members = {id(d) for g in groups for d in g}
    assert members - {id(d) for d in kept}, "members that are not kept targets come from the full list"
    assert make_slice_groups(dicts, kept, 1) == [[d] for d in kept]
    with pytest.raises(ValueError, match="not among the dataset dicts"):
        make_slice_groups(dicts[:5], kept, 2)


def test_flatten_groups():
    assert flatten_groups([[1, 2], [3], [4, 5]]) == [1, 2, 3, 4, 5]


@pytest.fixture
def case_dicts(tmp_path):
    """Dataset dicts of every slice of a tiny labeled 14-slice case in a cache."""
    rng = np.random.default_rng(2)
    z, h, w = 14, 24, 32
    image = rng.random((z, h, w)).astype(np.float16)
    label = np.zeros((z, h, w), np.uint8)
    label[:, 4:20, 2:14] = 1
    label[5:9, 6:10, 4:8] = 2
    anns = volume_instances(label)
    meta = {"settings": make_settings((-200, 300), 1.5), "split": "train", "labeled": True, "num_slices": z,
            "height": h, "width": w}
    case_dir = write_case(str(tmp_path / "cache"), "c0", {"image": image, "label": label},
                          meta, {str(k): v for k, v in anns.items()})
    return [{"file_name": f"{case_dir}/image.npy", "image_id": k, "case_id": "c0", "slice_index": k,
             "num_slices": z, "height": h, "width": w, "case_dir": case_dir,
             "annotations": [dict(a, bbox_mode=BoxMode(a["bbox_mode"])) for a in anns.get(k, [])]}
            for k in range(z)]


def _mapper(augmentations):
    return VolumetricDatasetMapper(True, augmentations=augmentations, bag_size=N, hu_window=(-200, 300),
                                   slice_spacing=1.5, targets=("instances", "sem_seg"))


def _shares_images(a, b):
    """Member a's 2.5D images 1..N-1 are member b's images 0..N-2, bit for bit (b's target 3 slices after a's)."""
    return a["image"].shape == b["image"].shape and torch.equal(a["image"][3:], b["image"][:-3])


AUGMENTATIONS = [T.ResizeShortestEdge((20, 28, 36), 1000, sample_style="choice"), T.RandomFlip(prob=0.5)]


def test_group_mapper_draws_one_augmentation_per_group(case_dicts):
    mapper = _mapper(AUGMENTATIONS)
    group_mapper = SliceGroupMapper(mapper)
    groups = make_slice_groups(case_dicts, case_dicts, 3)
    np.random.seed(0)
    flips, sizes = set(), set()
    for group in groups * 2:
        mapped = group_mapper(group)
        assert [d["slice_index"] for d in mapped] == [d["slice_index"] for d in group]
        for a, b in zip(mapped, mapped[1:]):
            assert _shares_images(a, b)
            # the same flip for the annotations: the liver (left in the volume) is on the same side in both
            assert torch.equal(a["sem_seg"] > 0, b["sem_seg"] > 0)
            assert a["instances"].gt_boxes.tensor[0, 0] == b["instances"].gt_boxes.tensor[0, 0]
        target = mapped[0]
        sizes.add(tuple(target["image"].shape[1:]))
        flips.add(bool(target["sem_seg"][:, :4].any()))  # the liver reached the left edge only when not flipped
    assert len(flips) == 2 and len(sizes) == 3, "the augmentations are random: both flips, every size drawn"

    # the same members mapped one by one get independent augmentations and lose the sharing
    np.random.seed(0)
    independent = [[mapper(d) for d in group] for group in groups]
    assert not all(_shares_images(a, b) for g in independent for a, b in zip(g, g[1:]))


def test_single_dict_call_is_unchanged(case_dicts):
    mapper = _mapper(AUGMENTATIONS)
    for seed in range(4):
        np.random.seed(seed)
        called = mapper(case_dicts[6])
        np.random.seed(seed)
        mapped, transforms = mapper.map_with_transforms(case_dicts[6])
        np.random.seed(seed)
        grouped = SliceGroupMapper(mapper)([case_dicts[6]])
        for other in (mapped, grouped[0]):
            assert torch.equal(called["image"], other["image"]) and torch.equal(called["sem_seg"], other["sem_seg"])
            assert torch.equal(called["instances"].gt_boxes.tensor, other["instances"].gt_boxes.tensor)
        # the returned transforms, applied again, reproduce the mapping
        again, _ = mapper.map_with_transforms(case_dicts[6], transforms)
        assert torch.equal(again["image"], called["image"])
    assert "annotations" not in called and called["slice_index"] == 6


def test_group_mapper_from_config_and_one_case_per_group(case_dicts):
    from volumetric_attention import get_va_cfg

    cfg = get_va_cfg(opts=["MODEL.VA.BAG_SIZE", N, "INPUT.MIN_SIZE_TRAIN", (24,), "INPUT.MAX_SIZE_TRAIN", 1000])
    group_mapper = SliceGroupMapper(cfg, is_train=True)
    mapped = group_mapper(case_dicts[2:9:3])
    assert [d["image"].shape for d in mapped] == [(3 * N, 24, 32)] * 3
    other = dict(case_dicts[5], case_id="c1")
    with pytest.raises(ValueError, match="one case"):
        group_mapper([case_dicts[2], other])
