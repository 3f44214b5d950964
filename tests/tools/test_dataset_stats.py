"""tools/dataset_stats.py: lesion figures per split against an independent count, and a bad case listed."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from volumetric_attention.data.phantoms import write_phantom_dataset


def _independent(seg_path, spacing_zyx):
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path)))
    components, n = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
    voxel_ml = float(np.prod(spacing_zyx))
    diameters = [(6 * (components == i).sum() * voxel_ml / np.pi) ** (1 / 3) for i in range(1, n + 1)]
    liver = labels >= 1
    return diameters, (labels == 2).sum() / liver.sum()


def test_dataset_stats_match_an_independent_count_and_list_a_bad_case(load_tool, tmp_path, capsys):
    spacing = (2.0, 3.0, 3.0)
    write_phantom_dataset(tmp_path, 4, seed=2, shape=(24, 64, 64), spacing=spacing)
    tool = load_tool("dataset_stats")
    assert tool.main([str(tmp_path), "--json", str(tmp_path / "stats.json")]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert set(stats) == {"train", "val"} and stats["train"]["cases"] == 3 and stats["val"]["cases"] == 1
    diameters, share = _independent(tmp_path / "segmentation-3.nii.gz", spacing)  # every 4th case is val
    val = stats["val"]
    assert val["lesions"] == len(diameters)
    assert val["diameter_mm_min_median_max"] == [
        pytest.approx(v, rel=1e-6) for v in (min(diameters), np.median(diameters), max(diameters))]
    assert val["lesion_percent_of_liver_min_max"][0] == pytest.approx(100 * share, rel=1e-6)
    out = capsys.readouterr().out
    assert out.startswith("train: 3 cases") and "val: 1 cases" in out

    (tmp_path / "segmentation-1.nii.gz").write_bytes(b"not a NIfTI")
    assert tool.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    failed = [line for line in err if line.startswith("failed: ")]
    assert len(failed) == 1 and "segmentation-1.nii.gz" in failed[0]
    assert tool.main([str(tmp_path / "empty")]) == 2
