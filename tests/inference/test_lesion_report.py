"""The lesion list groups predicted lesion voxels with TEST.CT.LESION_CONNECTIVITY, as the LiTS metrics do."""
import numpy as np
import pytest
import SimpleITK as sitk

from volumetric_attention.data.volume_io import read_volume
from volumetric_attention.inference import VolumePredictor, lesion_report

from .conftest import tiny_cfg


def _corner_touching_lesions(shape=(8, 16, 16)):
    """Two 3x3x3 cubes of lesion that share one corner point only (no face, no edge)."""
    mask = np.zeros(shape, bool)
    mask[1:4, 2:5, 2:5] = True
    mask[4:7, 5:8, 5:8] = True
    return mask


def _ct_file(tmp_path, shape=(8, 16, 16), spacing_xyz=(1.5, 1.5, 2.0)):
    image = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    image.SetSpacing(spacing_xyz)
    path = str(tmp_path / "ct.nii.gz")
    sitk.WriteImage(image, path)
    return path


def test_lesion_report_uses_the_connectivity(tmp_path):
    mask = _corner_touching_lesions()
    score = np.where(mask, 0.5, 0.0).astype(np.float32)
    score[5, 6, 6] = 0.9  # the second cube's best voxel
    _, geometry = read_volume(_ct_file(tmp_path))
    one = lesion_report(mask, score, geometry, connectivity=26)
    assert [row["max_score"] for row in one] == [0.9]
    assert len(one) == 1 and one[0]["volume_ml"] == pytest.approx(54 * 1.5 * 1.5 * 2.0 / 1000, abs=1e-4)
    two = lesion_report(mask, score, geometry, connectivity=6)
    assert len(two) == 2
    assert sorted(row["max_score"] for row in two) == [0.5, 0.9]
    assert [row["volume_ml"] for row in two] == [pytest.approx(27 * 4.5 / 1000, abs=1e-4)] * 2
    np.testing.assert_allclose(sorted(tuple(row["centroid_voxel_zyx"]) for row in two), [(2, 3, 3), (5, 6, 6)])
    with pytest.raises(ValueError, match="connectivity must be 6 or 26, got 8"):
        lesion_report(mask, score, geometry, connectivity=8)


@pytest.mark.parametrize("connectivity, expected", [(26, 1), (6, 2)])
def test_volume_predictor_lesion_list_follows_the_config(tiny_model_files, tmp_path, monkeypatch, connectivity,
                                                         expected):
    config, weights = tiny_model_files
    cfg = tiny_cfg(config, weights, ["TEST.CT.LESION_CONNECTIVITY", connectivity])
    predictor = VolumePredictor(cfg, progress=False)
    labels = np.where(_corner_touching_lesions(), 2, 1).astype(np.uint8)  # lesions inside a liver

    def fixed_labels(image_zyx, name=None):  # the model's per-slice output, fixed: only the grouping is under test
        assert image_zyx.shape == labels.shape  # 2 mm slices on a 2 mm cache grid: one cache slice per slice
        return labels, (labels == 2).astype(np.float32), 0

    monkeypatch.setattr(predictor, "predict_cache_grid", fixed_labels)
    prediction = predictor(_ct_file(tmp_path))
    np.testing.assert_array_equal(prediction.labels, labels)
    assert len(prediction.lesions) == expected
