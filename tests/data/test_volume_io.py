import locale
import os

import numpy as np
import pytest
import SimpleITK as sitk

from volumetric_attention.data.volume_io import VolumeError, read_volume, write_label_volume


def _image(array_zyx, spacing=(0.8, 0.7, 2.5), origin=(10.0, -20.0, 30.0), direction=None):
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


# x and y permuted and z flipped: a stored axis order far from the canonical one
ODD_DIRECTION = (0.0, 1.0, 0.0,
                 -1.0, 0.0, 0.0,
                 0.0, 0.0, -1.0)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd"])
def test_geometry_round_trip(tmp_path, ext):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(6, 9, 11)).astype(np.uint8)  # (z, y, x) as stored
    src = str(tmp_path / f"in{ext}")
    sitk.WriteImage(_image(labels, direction=ODD_DIRECTION), src)

    canonical, geometry = read_volume(src)
    # re-oriented to LPS: the stored image's x axis runs along -y (P), its y axis along +x (L), its z axis along -z
    # (S). The canonical (z, y, x) array therefore has the stored axes (z, x, y), z and the stored x flipped; its
    # direction is the identity and its spacing (x, y, z) is the stored (y, x, z) spacing
    assert geometry.canonical_orientation == "LPS"
    assert canonical.shape == (6, 11, 9)
    assert geometry.canonical_direction == pytest.approx((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    assert geometry.canonical_spacing == pytest.approx((0.7, 0.8, 2.5))
    np.testing.assert_array_equal(canonical, labels[::-1, :, ::-1].transpose(0, 2, 1))
    # independently: canonical voxel (k,j,i) sits at a physical point; the stored image has the same value there
    ref = sitk.ReadImage(src)
    can_img = sitk.GetImageFromArray(canonical)
    can_img.SetSpacing(geometry.canonical_spacing)
    can_img.SetOrigin(geometry.canonical_origin)
    can_img.SetDirection(geometry.canonical_direction)
    for (k, j, i) in [(0, 0, 0), (5, 3, 7), (2, 8, 1)]:
        p = can_img.TransformIndexToPhysicalPoint((i, j, k))
        assert ref.GetPixel(ref.TransformPhysicalPointToIndex(p)) == canonical[k, j, i]

    out = str(tmp_path / f"out{ext}")
    write_label_volume(canonical.astype(np.uint8), geometry, out)
    written = sitk.ReadImage(out)
    assert written.GetSize() == ref.GetSize()
    assert written.GetSpacing() == ref.GetSpacing()
    assert written.GetOrigin() == ref.GetOrigin()
    assert written.GetDirection() == ref.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def _write_dicom_series(folder, array_zyx, series_uid, spacing=(0.7, 0.7, 2.0)):
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer resets the locale; keep it for the other tests
    os.makedirs(folder, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array_zyx.shape[0]):
        sl = sitk.GetImageFromArray(array_zyx[k:k + 1].astype(np.int16))
        sl.SetSpacing(spacing)
        tags = {
            "0008|0060": "CT", "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": series_uid,
            "0020|0032": f"0\\0\\{k * spacing[2]}", "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(k + 1),
            "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0018|0050": str(spacing[2]),
            "0008|0018": f"{series_uid}.{k + 1}",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(os.path.join(folder, f"{series_uid[-3:]}_{k:03d}.dcm"))
        writer.Execute(sl)
    locale.setlocale(locale.LC_ALL, saved)


def test_dicom_series(tmp_path):
    arr = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 50).astype(np.int16)
    folder = str(tmp_path / "dcm")
    before = locale.setlocale(locale.LC_ALL)
    _write_dicom_series(folder, arr, "1.2.826.0.1.3680043.2.1125.101")
    vol, geometry = read_volume(folder)
    assert locale.setlocale(locale.LC_ALL) == before, "reading DICOM must not change the process locale"
    assert vol.shape == (4, 5, 6)
    np.testing.assert_allclose(vol, arr)
    assert geometry.spacing_zyx == pytest.approx((2.0, 0.7, 0.7))

    _write_dicom_series(folder, arr, "1.2.826.0.1.3680043.2.1125.202")
    with pytest.raises(VolumeError) as err:
        read_volume(folder)
    msg = str(err.value)
    assert folder in msg and "1.2.826.0.1.3680043.2.1125.101" in msg and "1.2.826.0.1.3680043.2.1125.202" in msg
    assert "\n" not in msg


def test_bad_volumes_one_line_errors(tmp_path):
    good = str(tmp_path / "good.nii.gz")
    sitk.WriteImage(_image(np.zeros((8, 16, 16), np.int16)), good)
    data = open(good, "rb").read()
    truncated = str(tmp_path / "truncated.nii.gz")
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    flat = str(tmp_path / "flat.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), flat)
    thin = str(tmp_path / "thin.nii.gz")
    sitk.WriteImage(_image(np.zeros((2, 16, 16), np.int16)), thin)
    for path, reason in [(truncated, "unreadable"), (flat, "2D"), (thin, "slices"),
                         (str(tmp_path / "missing.nii"), "not found")]:
        with pytest.raises(VolumeError) as err:
            read_volume(path)
        assert path in str(err.value) and reason in str(err.value) and "\n" not in str(err.value)
