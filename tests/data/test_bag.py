import numpy as np
import pytest

from volumetric_attention.data.bag import bag_slice_indices, make_bag_array
from volumetric_attention.data.cache import make_settings, write_case
from volumetric_attention.data.instances import volume_instances
from volumetric_attention.data.mapper import VolumetricDatasetMapper

from detectron2.data import transforms as T
from detectron2.structures import BoxMode


def _expected_bag(vol01, z, n):
    # independent: list the paper's slices z-4..z+4 (n=3) directly, clamp each one
    half_span = 3 * (n // 2) + 1
    chans = [vol01[min(max(s, 0), len(vol01) - 1)] for s in range(z - half_span, z + half_span + 1)]
    return np.stack(chans, axis=-1).astype(np.float32) * 255.0


@pytest.mark.parametrize("z", [0, 1, 3, 7, 10, 11])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_bag_matches_independent_numpy(z, n):
    rng = np.random.default_rng(0)
    vol = rng.random((12, 6, 5)).astype(np.float16)
    bag = make_bag_array(vol, z, n)
    assert bag.shape == (6, 5, 3 * n) and bag.dtype == np.float32
    np.testing.assert_allclose(bag, _expected_bag(vol.astype(np.float32), z, n), rtol=0, atol=1e-4)


def test_bag_indices_contract():
    assert bag_slice_indices(10, 30, 3).tolist() == list(range(6, 15))
    assert bag_slice_indices(10, 30, 1).tolist() == [9, 10, 11]
    assert bag_slice_indices(0, 30, 3).tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4]
    assert bag_slice_indices(29, 30, 3).tolist() == [25, 26, 27, 28, 29, 29, 29, 29, 29]
    with pytest.raises(ValueError):
        bag_slice_indices(3, 10, 2)


def _tiny_case(tmp_path, settings):
    rng = np.random.default_rng(1)
    z, h, w = 12, 24, 32
    image = rng.random((z, h, w)).astype(np.float16)
    label = np.zeros((z, h, w), np.uint8)
    label[:, 4:20, 2:14] = 1          # liver on the left
    label[5:8, 6:10, 4:8] = 2         # lesion inside it
    anns = {str(k): v for k, v in volume_instances(label).items()}
    meta = {"settings": settings, "split": "train", "labeled": True, "num_slices": z, "height": h, "width": w}
    case_dir = write_case(str(tmp_path / "cache"), "c0", {"image": image, "label": label}, meta, anns)
    record = {"file_name": f"{case_dir}/image.npy", "image_id": 0, "case_id": "c0", "slice_index": 6,
              "num_slices": z, "height": h, "width": w, "case_dir": case_dir,
              "annotations": [dict(a, bbox_mode=BoxMode(a["bbox_mode"])) for a in anns["6"]]}
    return image, label, record


@pytest.mark.parametrize("mask_format", ["bitmask", "polygon"])
def test_mapper_flip_moves_bag_and_annotations_together(tmp_path, mask_format):
    settings = make_settings((-200, 300), 1.5)
    image, label, record = _tiny_case(tmp_path, settings)
    kw = dict(bag_size=3, hu_window=(-200, 300), slice_spacing=1.5, targets=("instances", "sem_seg"),
              mask_format=mask_format)
    plain = VolumetricDatasetMapper(True, augmentations=[], **kw)(dict(record))
    flipped = VolumetricDatasetMapper(True, augmentations=[T.RandomFlip(prob=1.0)], **kw)(dict(record))

    expected = _expected_bag(image.astype(np.float32), 6, 3).transpose(2, 0, 1)
    np.testing.assert_allclose(plain["image"].numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(flipped["image"].numpy(), expected[:, :, ::-1], atol=1e-3)
    assert plain["image"].shape == (9, 24, 32)
    np.testing.assert_array_equal(flipped["sem_seg"].numpy(), label[6][:, ::-1])

    inst = flipped["instances"]
    assert inst.gt_classes.tolist() == [0, 1]
    w = 32
    boxes = inst.gt_boxes.tensor.numpy()
    np.testing.assert_allclose(boxes[1], [w - 8, 6, w - 4, 10])  # lesion x 4..8 mirrored
    if mask_format == "bitmask":
        masks = inst.gt_masks.tensor.numpy()
        np.testing.assert_array_equal(masks[1], (label[6] == 2)[:, ::-1])
        np.testing.assert_array_equal(masks[0], (label[6] >= 1)[:, ::-1])
        # pixels under the flipped lesion mask in the flipped target slice are the original lesion's pixels
        target_plain, target_flip = plain["image"][4].numpy(), flipped["image"][4].numpy()
        np.testing.assert_allclose(target_flip[masks[1]], target_plain[:, ::-1][masks[1]])
    for key in ("file_name", "image_id", "case_id", "slice_index", "height", "width", "num_slices"):
        assert flipped[key] == record[key]


def test_mapper_rejects_cache_with_other_settings(tmp_path):
    _, _, record = _tiny_case(tmp_path, make_settings((-100, 200), 1.5))
    mapper = VolumetricDatasetMapper(True, augmentations=[], bag_size=3, hu_window=(-200, 300), slice_spacing=1.5)
    with pytest.raises(ValueError, match="hu_window"):
        mapper(record)


def test_mapper_from_config_bag_size(tmp_path):
    from volumetric_attention.config import get_va_cfg

    _, _, record = _tiny_case(tmp_path, make_settings((-200, 300), 1.5))
    cfg = get_va_cfg(opts=["MODEL.VA.ENABLED", "False", "INPUT.MASK_FORMAT", "bitmask", "INPUT.MIN_SIZE_TEST", "48",
                           "INPUT.MAX_SIZE_TEST", "1000"])
    out = VolumetricDatasetMapper(cfg, is_train=False)(record)
    assert out["image"].shape == (3, 48, 64) and "instances" not in out and "annotations" not in out
    assert out["height"] == 24 and out["width"] == 32
