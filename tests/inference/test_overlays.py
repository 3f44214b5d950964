import importlib.util

import cv2
import numpy as np
import SimpleITK as sitk

from volumetric_attention.data.volume_io import case_name, read_volume, write_label_volume
from volumetric_attention.inference.overlays import slices_that_matter

from .conftest import oblique_nifti

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _visualize_main():
    spec = importlib.util.spec_from_file_location("_visualize", ROOT / "tools" / "visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_overlay_pngs_and_montage_are_written(tmp_path):
    ct = tmp_path / "case.v2.nii.gz"
    oblique_nifti(ct)
    hu, geometry = read_volume(ct)
    labels = np.zeros(hu.shape, np.uint8)
    labels[5:9, 10:30, 10:30] = 1  # liver
    labels[6:8, 15:20, 15:20] = 2  # lesion inside it
    pred = tmp_path / "pred.nii.gz"
    write_label_volume(labels, geometry, pred)
    out = tmp_path / "overlays"
    assert _visualize_main()(["--volume", str(ct), "--prediction", str(pred), "--ground-truth", str(pred),
                              "--output", str(out), "--count", "3", "--scale", "1"]) == 0
    assert case_name(ct) == "case.v2"
    pngs = sorted(p.name for p in out.glob("*.png"))
    chosen = slices_that_matter(labels, labels, 3)
    assert pngs == sorted([f"case.v2_z{z:03d}.png" for z in chosen] + ["case.v2_montage.png"])
    assert set(chosen) <= {5, 6, 7, 8} and {6, 7} <= set(chosen)  # lesion slices first
    image = cv2.imread(str(out / "case.v2_z006.png"))[:, :, ::-1]  # RGB
    assert image.shape[:2] == hu.shape[1:]
    red = (image[..., 0] > image[..., 1] + 40) & (image[..., 0] > image[..., 2] + 40)
    green = (image[..., 1] > image[..., 0] + 40) & (image[..., 1] > image[..., 2] + 40)
    assert red.sum() > 50 and green.sum() > 5, "liver drawn red, lesion green"
    assert cv2.imread(str(out / "case.v2_montage.png")).size > 0


def test_label_map_on_another_grid_is_refused(tmp_path):
    ct = tmp_path / "ct.nii.gz"
    oblique_nifti(ct)
    wrong = tmp_path / "wrong.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6, 7), np.uint8)), str(wrong))
    assert _visualize_main()(["--volume", str(ct), "--prediction", str(wrong), "--output", str(tmp_path / "o")]) == 1
