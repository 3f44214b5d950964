import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from volumetric_attention.data import phantoms as phantoms_module
from volumetric_attention.data.phantoms import make_phantom, write_phantom_dataset


def test_phantom_deterministic_and_seed_dependent(tmp_path):
    a = make_phantom(7, shape=(20, 48, 48), spacing=(2.0, 7.0, 7.0))
    b = make_phantom(7, shape=(20, 48, 48), spacing=(2.0, 7.0, 7.0))
    c = make_phantom(8, shape=(20, 48, 48), spacing=(2.0, 7.0, 7.0))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    write_phantom_dataset(tmp_path / "x", 1, seed=3, shape=(12, 32, 32), spacing=(2.0, 10.0, 10.0))
    write_phantom_dataset(tmp_path / "y", 1, seed=3, shape=(12, 32, 32), spacing=(2.0, 10.0, 10.0))
    for name in ("volume-0.nii.gz", "segmentation-0.nii.gz"):
        x = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "x" / name)))
        y = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "y" / name)))
        np.testing.assert_array_equal(x, y)
    assert sitk.ReadImage(str(tmp_path / "x" / "volume-0.nii.gz")).GetSpacing() == (10.0, 10.0, 2.0)


def test_phantom_anatomy_vessels_are_liver_and_long():
    hu, labels, spacing = make_phantom(1, shape=(40, 96, 96), spacing=(2.0, 3.5, 3.5), noise_hu=0.0)
    liver = labels >= 1
    assert liver.any() and (labels == 2).any() and set(np.unique(labels)) <= {0, 1, 2}
    assert hu.min() < -900 and hu.max() > 400  # air outside, bone in the spine
    # vessels: lesion-like intensity (far from liver's ~60 HU) but label 1
    vessel = (labels == 1) & (np.abs(hu - 60.0) > 35.0)
    assert vessel.sum() > 50
    comps, n = ndimage.label(vessel)
    extents = [s[0].stop - s[0].start for s in ndimage.find_objects(comps)]
    liver_z = np.nonzero(liver.any(axis=(1, 2)))[0]
    assert max(extents) >= 0.5 * (liver_z.max() - liver_z.min() + 1)
    # lesions are compact: the smallest one spans far fewer slices than the longest vessel
    les, m = ndimage.label(labels == 2)
    les_extents = [s[0].stop - s[0].start for s in ndimage.find_objects(les)]
    assert min(les_extents) < max(extents) / 2


@pytest.mark.parametrize("profile", ["abdomen", "zcontext_liver"])
def test_vessel_mask_is_where_the_vessels_are_and_changes_nothing_else(profile):
    shape = (24, 96, 96) if profile == "abdomen" else (24, 256, 256)  # zcontext_liver crops to 128 x 128
    hu, labels, spacing = make_phantom(3, shape=shape, noise_hu=0.0, profile=profile)
    hu_v, labels_v, spacing_v, vessels = make_phantom(3, shape=shape, noise_hu=0.0, profile=profile,
                                                      with_vessels=True)
    np.testing.assert_array_equal(hu, hu_v)
    np.testing.assert_array_equal(labels, labels_v)
    assert spacing == spacing_v and vessels.shape == labels.shape and vessels.dtype == bool
    # independently: liver-labelled voxels at a lesion-like intensity (the liver's texture stays within 35 HU of 60)
    lesion_like = (labels == 1) & (np.abs(hu - 60.0) > 35.0)
    assert vessels.sum() > 100 and not (vessels & (labels != 1)).any()
    assert (vessels != lesion_like).mean() < 1e-4, (vessels != lesion_like).sum()


def test_default_profile_is_the_abdomen_profile_and_unknown_profiles_fail():
    a = make_phantom(5, shape=(16, 48, 48), spacing=(2.0, 7.0, 7.0))
    b = make_phantom(5, shape=(16, 48, 48), spacing=(2.0, 7.0, 7.0), profile="abdomen")
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="unknown phantom profile 'lung'"):
        make_phantom(5, profile="lung")


def test_zcontext_profile_vessels_as_wide_as_small_lesions_but_longer():
    """In the z-context profile a vessel's cross-section is as wide as a small lesion's; only z tells them apart."""
    _, labels, (sz, sy, _) = make_phantom(2, shape=(60, 128, 128), profile="zcontext")
    assert 1.5 <= sy <= 1.7
    hu, _, _ = make_phantom(2, shape=(60, 128, 128), profile="zcontext", noise_hu=0.0)
    vessel = (labels == 1) & (np.abs(hu - 60.0) > 35.0)
    comps, _ = ndimage.label(vessel)
    lengths = [(sl[0].stop - sl[0].start) * sz for sl in ndimage.find_objects(comps)]
    assert sum(length > 30.0 for length in lengths) >= 4  # 4-7 vessels through the liver
    # in-plane cross-sections: median equivalent diameter of the 2D vessel components, slice by slice
    widths = []
    for z in range(vessel.shape[0]):
        cross, k = ndimage.label(vessel[z])
        if k:
            areas = ndimage.sum_labels(np.ones_like(cross), cross, index=np.arange(1, k + 1))
            widths += list(2 * np.sqrt(areas / np.pi) * sy)
    assert 7.0 <= np.median(widths) <= 12.0, np.median(widths)
    les, m = ndimage.label(labels == 2)
    small = [s for s in ndimage.find_objects(les) if (s[0].stop - s[0].start) * sz <= 15.0]
    assert small, "the zcontext profile makes small lesions"
    assert max(lengths) > 3 * 15.0


def test_zcontext_liver_profile_crops_the_liver_at_native_resolution():
    """128 x 128 crops of 256 x 256 slices at 0.65-0.75 mm, the whole liver inside; small lesions (< 15 mm) are at
    least 12 px across; the crop is the same anatomy as the uncropped slice."""
    small_extents = []
    for seed in (0, 3):
        hu, labels, (sz, sy, sx) = make_phantom(seed, shape=(40, 256, 256), profile="zcontext_liver")
        assert labels.shape == (40, 128, 128) and hu.shape == labels.shape and 0.65 <= sy == sx <= 0.75
        liver = labels >= 1
        assert liver.any() and not (liver[:, [0, -1]].any() or liver[:, :, [0, -1]].any())  # nothing cut off
        comps, k = ndimage.label(labels == 2)
        for sl, index in zip(ndimage.find_objects(comps), range(1, k + 1)):
            volume = float((comps[sl] == index).sum()) * sz * sy * sx
            if (6 * volume / np.pi) ** (1 / 3) < 15.0:
                small_extents.append(max(sl[1].stop - sl[1].start, sl[2].stop - sl[2].start))
    assert small_extents and min(small_extents) >= 12, small_extents
    full = phantoms_module.PROFILES["zcontext_liver"].copy()
    try:  # without the crop: the written crop is a window of the full slice
        phantoms_module.PROFILES["zcontext_liver"] = dict(full, crop_px=None)
        _, labels_full, _ = make_phantom(0, shape=(40, 256, 256), profile="zcontext_liver")
    finally:
        phantoms_module.PROFILES["zcontext_liver"] = full
    _, labels_crop, _ = make_phantom(0, shape=(40, 256, 256), profile="zcontext_liver")
    y_full, x_full = np.nonzero(labels_full.any(axis=0))
    y_crop, x_crop = np.nonzero(labels_crop.any(axis=0))
    y0, x0 = y_full.min() - y_crop.min(), x_full.min() - x_crop.min()
    np.testing.assert_array_equal(labels_full[:, y0:y0 + 128, x0:x0 + 128], labels_crop)
    assert (labels_full >= 1).sum() == (labels_crop >= 1).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zcontext_small_profile_poses_the_small_lesion_regime(seed):
    """Only lesions of 15 mm or less, at most 1% of the liver, among curved vessels of their size that outnumber
    them."""
    hu, labels, (sz, sy, sx) = make_phantom(seed, profile="zcontext_small", noise_hu=0.0)
    assert hu.shape[1:] == (128, 128) and 0.75 <= sy <= 0.9
    liver, lesion = labels >= 1, labels == 2
    assert 0 < lesion.sum() <= 0.01 * liver.sum()
    comps, n = ndimage.label(lesion)
    assert n >= 2
    for box in ndimage.find_objects(comps):
        extent_mm = [(s.stop - s.start) * mm for s, mm in zip(box, (sz, sy, sx))]
        assert max(extent_mm[1:]) <= 15.0 + sy and extent_mm[0] <= 15.0 + sz, extent_mm
    vessel = (labels == 1) & (np.abs(hu - 60.0) > 35.0)
    assert vessel.sum() > 2 * lesion.sum()
    # curved: some vessel's in-plane centre moves by more than its own width along z
    vcomps, _ = ndimage.label(vessel)
    shifts = []
    for k, box in enumerate(ndimage.find_objects(vcomps), start=1):
        centres = [ndimage.center_of_mass(vcomps[z] == k) for z in range(box[0].start, box[0].stop)
                   if (vcomps[z] == k).any()]
        if len(centres) > 5:
            c = np.array(centres) * (sy, sx)
            shifts.append(np.ptp(c - np.polyfit(np.arange(len(c)), c, 1)[0] * np.arange(len(c))[:, None], axis=0).max())
    assert max(shifts) > 3.0  # mm away from a straight line, beyond the straight tubes' linear drift
